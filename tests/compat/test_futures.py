"""prefect.futures: wait, as_completed, the future classes."""

from __future__ import annotations

import time

import pytest

from flowbus import flow, task
from flowbus.futures import (
    PrefectFuture,
    PrefectFutureList,
    as_completed,
    resolve_futures_to_states,
    wait,
)


@task
def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_wait_returns_done_and_not_done() -> None:
    @flow
    def pipeline() -> tuple[int, int, int, int]:
        quick = [sleepy.submit(0) for _ in range(3)]
        done, not_done = wait(quick)
        slow = sleepy.submit(1)
        partial = wait([slow], timeout=0.05)
        slow.wait()
        return len(done), len(not_done), len(partial.done), len(partial.not_done)

    assert pipeline() == (3, 0, 0, 1)


def test_as_completed_yields_in_finishing_order() -> None:
    @flow
    def pipeline() -> list[float]:
        futures = [sleepy.submit(s) for s in (0.6, 0.0)]
        return [future.result() for future in as_completed(futures)]

    assert pipeline() == [0.0, 0.6]


def test_as_completed_times_out() -> None:
    @flow
    def pipeline() -> bool:
        slow = sleepy.submit(1)
        try:
            list(as_completed([slow], timeout=0.05))
        except TimeoutError:
            return True
        finally:
            slow.wait()
        return False

    assert pipeline()


def test_future_classes_under_prefect_names() -> None:
    @flow
    def pipeline() -> tuple[bool, bool, list[str]]:
        future = sleepy.submit(0)
        mapped = sleepy.map([0, 0])
        states = resolve_futures_to_states([future, *mapped])
        return (
            isinstance(future, PrefectFuture),
            isinstance(mapped, PrefectFutureList),
            [s.name for s in states],
        )

    assert pipeline() == (True, True, ["Completed"] * 3)


def test_a_future_result_raises_the_task_exception() -> None:
    @task
    def broken() -> None:
        raise ValueError("bad input")

    @flow
    def pipeline() -> str:
        future = broken.submit()
        with pytest.raises(ValueError, match="bad input"):
            future.result()
        return future.state.name

    assert pipeline() == "Failed"
