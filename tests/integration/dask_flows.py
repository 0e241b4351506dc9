"""Flows whose tasks run on Dask (tests/integration/test_dask.py); their module is sent to the
workers by value, as a user's flow file is."""

from __future__ import annotations

import time
from pathlib import Path

from flowbus import flow, get_run_logger, task, unmapped
from flowbus.task_runners import DaskTaskRunner


@task
def double(x: int) -> int:
    return 2 * x


@task
def add(x: int, y: int, offset: int = 0) -> int:
    return x + y + offset


@task(log_prints=True)
def chatty(word: str) -> str:
    get_run_logger().info("logged on a worker: %s", word)
    print(f"printed on a worker: {word}")
    return word.upper()


@task(retries=2, retry_delay_seconds=0.2)
def flaky(marker: str) -> str:
    """Fails the first time (a marker file remembers), then succeeds."""
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise ConnectionError("the first call fails")
    return "second time lucky"


@task(timeout_seconds=1)
def slow() -> None:
    time.sleep(5)


class Unpicklable(Exception):
    """An exception that holds what pickling refuses."""

    def __init__(self) -> None:
        super().__init__("holds a lock")
        import threading

        self.lock = threading.Lock()


@task
def broken(kind: str) -> None:
    if kind == "value":
        raise ValueError("bad value on a worker")
    raise Unpicklable()


@task(tags=["db"])
def one_at_a_time(i: int) -> tuple[float, float]:
    started = time.time()
    time.sleep(0.3)
    return started, time.time()


@task
async def async_square(x: int) -> int:
    return x * x


@flow
def fan_out(n: int = 10) -> dict[str, object]:
    doubled = double.map(range(n))
    total = add.submit(doubled[0], doubled[1], offset=100)
    offsets = add.map(range(3), unmapped(10))
    after = double.submit(5, wait_for=[total])
    squares = [f.result() for f in async_square.map(range(4))]
    return {
        "doubled": [f.result() for f in doubled],
        "total": total.result(),
        "offsets": [f.result() for f in offsets],
        "after": after.result(),
        "squares": squares,
    }


@flow
def logs_and_retries(marker: str) -> dict[str, str]:
    return {"chatty": chatty("hello"), "flaky": flaky(marker)}


@flow
def failures(kind: str) -> None:
    broken(kind)


@flow
def times_out() -> None:
    slow()


@flow(task_runner=DaskTaskRunner())
def on_the_agents_cluster(n: int = 6) -> dict[str, object]:
    """No address: a deployed run uses its agent's cluster (FLOWBUS_DASK_ADDRESS). Its ``db``
    task runs hold a slot of the tag's limit each, wherever they run."""
    total = sum(f.result() for f in double.map(range(n)))
    return {"total": total, "spans": [f.result() for f in one_at_a_time.map(range(4))]}


@task(cache_key_fn=lambda context, parameters: f"square-{parameters['x']}")
def cached_square(x: int, marker: str) -> int:
    """Leaves a line in ``marker`` each time it really runs."""
    with open(marker, "a") as out:
        out.write("ran\n")
    return x * x


@flow
def cached_twice(marker: str) -> list[int]:
    return [cached_square(3, marker), cached_square(3, marker)]


@task
def pause_then_double(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return 2 * x


@flow
def slow_map(n: int = 12, seconds: float = 0.5) -> list[int]:
    return [f.result() for f in pause_then_double.map(range(n), unmapped(seconds))]
