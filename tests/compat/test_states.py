"""prefect.states: states returned by tasks and flows, and their results."""

from __future__ import annotations

import pytest

from flowbus import flow, task
from flowbus.exceptions import CancelledRun, CrashedRun, FailedRun, UnfinishedRun
from flowbus.states import (
    AwaitingRetry,
    Cancelled,
    Completed,
    Crashed,
    Failed,
    Late,
    Paused,
    Pending,
    Retrying,
    Running,
    Scheduled,
    State,
    StateType,
)


def test_state_constructors_have_prefect_types_and_names() -> None:
    expected = {
        Completed: (StateType.COMPLETED, "Completed"),
        Failed: (StateType.FAILED, "Failed"),
        Cancelled: (StateType.CANCELLED, "Cancelled"),
        Crashed: (StateType.CRASHED, "Crashed"),
        Pending: (StateType.PENDING, "Pending"),
        Running: (StateType.RUNNING, "Running"),
        Scheduled: (StateType.SCHEDULED, "Scheduled"),
        Paused: (StateType.PAUSED, "Paused"),
        Late: (StateType.SCHEDULED, "Late"),
        AwaitingRetry: (StateType.SCHEDULED, "AwaitingRetry"),
        Retrying: (StateType.RUNNING, "Retrying"),
    }
    for make, (kind, name) in expected.items():
        state = make(message="m")
        assert isinstance(state, State)
        assert (state.type, state.name, state.message) == (kind, name, "m")
    assert Completed().is_completed() and Failed().is_failed() and Crashed().is_crashed()
    assert Cancelled().is_cancelled() and Pending().is_pending() and Running().is_running()
    assert Scheduled().is_scheduled() and Paused().is_paused()
    assert Pending(name="NotReady").name == "NotReady"


def test_result_raises_on_failure_or_returns_the_exception() -> None:
    assert Completed(data=3).result() == 3
    assert Completed().result() is None
    with pytest.raises(FailedRun, match="broken"):
        Failed(message="broken").result()
    assert isinstance(Failed(message="broken").result(raise_on_failure=False), FailedRun)
    error = ValueError("inner")
    assert Failed(data=error).result(raise_on_failure=False) is error
    with pytest.raises(CrashedRun):
        Crashed(message="gone").result()
    with pytest.raises(CancelledRun):
        Cancelled().result()
    with pytest.raises(UnfinishedRun):
        Running().result()


def test_a_task_returning_failed_ends_failed_with_that_message() -> None:
    @task
    def check(rows: int) -> State | int:
        if rows == 0:
            return Failed(message="no rows")
        return rows

    @flow
    def pipeline() -> tuple[str, str | None, int]:
        state = check(0, return_state=True)
        return state.name, state.message, check(4)

    assert pipeline() == ("Failed", "no rows", 4)


def test_a_returned_completed_state_gives_its_data() -> None:
    @task
    def produce() -> State:
        return Completed(message="made", data={"rows": 2})

    @flow
    def pipeline() -> dict[str, int]:
        return produce()

    assert pipeline() == {"rows": 2}


def test_a_flow_that_returns_failed_ends_failed_and_raises_when_called() -> None:
    @flow
    def says_no() -> State:
        return Failed(message="flow says no")

    with pytest.raises(FailedRun, match="flow says no"):
        says_no()
    state = says_no(return_state=True)
    assert state.is_failed() and state.message == "flow says no"


def test_a_flow_whose_task_raises_raises_the_same_exception() -> None:
    @task
    def boom() -> None:
        raise KeyError("k")

    @flow
    def pipeline() -> None:
        boom()

    with pytest.raises(KeyError):
        pipeline()
    assert pipeline(return_state=True).is_failed()
