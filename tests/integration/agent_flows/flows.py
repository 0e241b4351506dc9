"""Flows that integration tests deploy and agents run."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pydantic import BaseModel

from flowbus import flow, get_run_logger, pause_flow_run, task


@task
def double(x: int) -> int:
    return 2 * x


@flow
def quick(n: int = 3) -> int:
    """A few task runs and a result."""
    get_run_logger().info("adding %d doubles", n)
    return sum(double(i) for i in range(n))


@task(retries=2, retry_delay_seconds=0)
def fails_once() -> str:
    from flowbus import runtime

    if runtime.task_run.run_count < 2:
        raise ConnectionError("a blip")
    return "ok"


@flow
def retried_once() -> dict[str, object]:
    """A task that needs one retry, and a result JSON holds."""
    return {"status": fails_once(), "rows": [1, 2]}


@flow
def noop() -> None:
    """Nothing at all: for dispatch overhead."""


@flow
def counted(ledger: str) -> None:
    """Appends its run's id to ``ledger``: one line per execution of the body."""
    from flowbus import runtime

    with open(ledger, "a") as out:  # O_APPEND: whole lines from any number of processes
        out.write(f"{runtime.flow_run.id}\n")


@flow
def fails_first(marker: str) -> str:
    """Fails the first time (leaving ``marker``), succeeds after: a run worth retrying."""
    if not Path(marker).exists():
        Path(marker).touch()
        raise RuntimeError("the first attempt fails")
    return "second time lucky"


@flow
async def sleepy_once(seconds: float = 1.0) -> str:
    """Sleeps, with no retries of its own (crash recovery is the deployment's)."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@flow(retries=1)
async def sleepy(seconds: float = 1.0, marker: str = "") -> str:
    """Sleeps; with ``marker`` it leaves a file per start (to count executions)."""
    if marker:
        Path(marker).mkdir(parents=True, exist_ok=True)
        (Path(marker) / f"{os.getpid()}-{time.monotonic_ns()}").touch()
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@flow(retries=1)
def blocking(seconds: float = 1.0) -> str:
    """A sync flow that blocks its thread."""
    time.sleep(seconds)
    return "done"


@flow
def fails(reason: str = "bad input") -> None:
    """Fails with a message (what a bug in a flow looks like)."""
    raise ValueError(reason)


@flow
def dies() -> None:
    """Kills its own process: what a segfault in a C extension looks like to the agent."""
    os._exit(3)


@flow
def uses_secret(fail: bool = False) -> str:
    """Loads a secret block and is careless with it: logs, prints, returns, raises it."""
    from flowbus import Secret, variables
    from flowbus.variables import Variable

    key = Secret.load("api-key").get()
    get_run_logger().info("calling the API with key %s in %s", key, variables.get("region"))
    Variable.set("last-caller", "uses-secret", tags=["audit"], overwrite=True)  # by the agent
    print(f"key={key}")
    if fail:
        raise RuntimeError(f"the API refused key {key}")
    return f"done with {key}"


@flow
def saves_block() -> None:
    """Tries to save a block from a run on an agent (refused: no store, no key there)."""
    from flowbus import Secret

    Secret(value="x").save("made-by-a-run", overwrite=True)


@task(tags=["db"])
async def query(seconds: float) -> float:
    """Holds a "db" slot for a while; returns when it ran (to measure overlap)."""
    await asyncio.sleep(seconds)
    return seconds


@flow
async def limited(n: int = 100, seconds: float = 0.05) -> int:
    """``n`` task runs tagged "db", all submitted at once: the tag's limit paces them."""
    futures = [query.submit(seconds) for _ in range(n)]
    return len([await future for future in futures])


@flow
def limited_sync(n: int = 10, seconds: float = 0.05) -> int:
    """The same from a sync flow (its task runs go to a thread pool)."""
    from flowbus import ThreadPoolTaskRunner  # noqa: F401 - the default runner is enough

    futures = [query.submit(seconds) for _ in range(n)]
    return len([future.result() for future in futures])


class Approval(BaseModel):
    approved: bool
    note: str = ""


@flow
def needs_approval(amount: int = 100, timeout: float = 120) -> str:
    """Parks itself until someone approves; the answer decides what it returns."""
    get_run_logger().info("asking for approval of %d", amount)
    answer = pause_flow_run(timeout=timeout, wait_for_input=Approval)
    return f"{'approved' if answer.approved else 'refused'}: {answer.note}"


@flow
def needs_input(path: str) -> str:
    """A required parameter without a default."""
    return path


@flow
def with_artifacts(rows: int = 2) -> str:
    from flowbus import runtime
    from flowbus.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact([{"row": i} for i in range(rows)], key="rows-table")
    create_markdown_artifact(f"# Report\n{rows} rows", key="rows-report", description="summary")
    return f"{runtime.deployment.name}:{runtime.flow_run.deployment_name}"


@task
def guarded(path: str, seconds: float) -> None:
    """Holds a slot of the global limit "warehouse"; notes when it held it in ``path``."""
    from flowbus.concurrency.sync import concurrency

    with concurrency("warehouse", occupy=1):
        with open(path, "a") as out:
            out.write(f"{time.time()} 1\n")
        time.sleep(seconds)
        with open(path, "a") as out:
            out.write(f"{time.time()} -1\n")


@flow
def warehouse_load(path: str, n: int = 10, seconds: float = 0.05) -> int:
    return len(guarded.map([path] * n, [seconds] * n).result())


@task
def step(ledger: str, name: str, marker: str = "", action: str = "") -> str | tuple[str, str]:
    """Appends ``name`` to ``ledger`` (one line per execution of its body). With ``marker``:
    the first execution (which leaves the marker) fails, or hangs for ten minutes."""
    with open(ledger, "a") as out:
        out.write(f"{name}\n")
    if marker and not Path(marker).exists():
        Path(marker).touch()
        if action == "fail":
            raise RuntimeError(f"{name} fails the first time")
        if action == "hang":
            time.sleep(600)
    if name == "second":  # not JSON: its result goes to result storage
        return (name, "done")
    return f"{name} done"


@flow
def three_steps(ledger: str, marker: str = "", action: str = "") -> list[object]:
    """Three tasks in a row; the third may fail or hang the first time (see ``step``)."""
    return [step(ledger, "first"), step(ledger, "second"), step(ledger, "third", marker, action)]


@flow
def step_pause_step(ledger: str) -> str:
    """A task, a pause, a task: the resumed run replays the first."""
    first = step(ledger, "first")
    pause_flow_run(timeout=120)
    return f"{first}, then {step(ledger, 'after the pause')}"


def note(ledger: str, what: str) -> None:
    """Append ``<run id> <what>`` to ``ledger``: one line per execution of a body."""
    from flowbus import runtime

    with open(ledger, "a") as out:  # O_APPEND: whole lines from any number of processes
        out.write(f"{runtime.flow_run.id} {what}\n")


@task
def chaos_step(ledger: str, name: str, pause: float) -> int:
    note(ledger, name)
    time.sleep(pause)
    return 1


@flow
def chaos_steps(ledger: str, pause: float = 0.05) -> int:
    """Three tasks in a row, then the body's end: each execution leaves a line in ``ledger``."""
    total = sum(chaos_step(ledger, name, pause) for name in ("a", "b", "c"))
    note(ledger, "end")
    return total


@flow
def inner(ledger: str) -> dict[str, int]:
    """A subflow: one line in ``ledger`` per execution of its body."""
    with open(ledger, "a") as out:
        out.write("inner\n")
    return {"rows": 3}


@flow
def with_subflow(ledger: str, marker: str, action: str = "hang") -> str:
    """A subflow, then a task that hangs (or fails) the first time."""
    rows = inner(ledger)["rows"]
    return f"{rows} rows, {step(ledger, 'after', marker, action)}"


@flow
def scheduled_slot() -> str:
    """The slot its run was scheduled for, as the run sees it."""
    from flowbus import runtime

    return runtime.flow_run.scheduled_start_time.isoformat()


@flow
def on_push(commit: str, branch: str = "") -> str:
    """Started by a webhook's event: the commit a push brought."""
    return f"{branch}@{commit}"


@task(retries=2, retry_delay_seconds=30)
def flaky_call() -> None:
    raise ConnectionError("the service is down")


@flow
def waits_to_retry() -> None:
    """Its task fails and waits 30 s before its retry: a cancel must not wait that long."""
    flaky_call()
