"""The deployment B4 dispatches: a flow that does nothing, so dispatch is all that is measured."""

from flowbus import flow, task


@flow
def noop() -> None:
    return None


@task
def step(x: int) -> int:
    return x + 1


@flow
def three_tasks(x: int = 0) -> int:
    """Three trivial tasks in a row: the shape Restate and DBOS publish figures for."""
    return step(step(step(x)))


@flow
async def waits_on_io(seconds: float = 0.1) -> None:
    """B6: a flow that waits on I/O (a 100 ms sleep): an agent's concurrency bounds it."""
    import asyncio

    await asyncio.sleep(seconds)
