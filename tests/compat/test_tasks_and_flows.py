"""Hooks as decorators, retry options, wait_for and parameters, as Prefect 3 behaves."""

from __future__ import annotations

import pytest

from flowbus import allow_failure, flow, task
from flowbus.exceptions import ParameterTypeError, UnfinishedRun
from flowbus.states import State

seen: list[str] = []


def test_task_hooks_as_decorators() -> None:
    @task
    def ok() -> int:
        return 1

    @task
    def bad() -> None:
        raise ValueError("x")

    @ok.on_completion
    def done(task, task_run, state):  # type: ignore[no-untyped-def]
        seen.append(f"completed {task.name} {state.name}")

    @bad.on_failure
    def failed(task, task_run, state):  # type: ignore[no-untyped-def]
        seen.append(f"failed {task.name} {state.name}")

    @flow
    def pipeline() -> None:
        ok()
        bad(return_state=True)

    seen.clear()
    pipeline()
    assert seen == ["completed ok Completed", "failed bad Failed"]
    seen.clear()
    ok.with_options(name="ok2")  # a copy keeps the hooks added by decorator
    assert ok.with_options(name="ok2").on_completion_hooks == [done]


def test_flow_hooks_as_decorators() -> None:
    @flow
    def fine() -> None:
        return None

    @flow
    def broken() -> None:
        raise RuntimeError("no")

    @fine.on_running
    def running(flow, flow_run, state):  # type: ignore[no-untyped-def]
        seen.append(f"running {state.name}")

    @fine.on_completion
    def completed(flow, flow_run, state):  # type: ignore[no-untyped-def]
        seen.append(f"completed {flow_run.name == fine_state_name[0]}")

    @broken.on_failure
    def failed(flow, flow_run, state):  # type: ignore[no-untyped-def]
        seen.append(f"failed {state.message}")

    fine_state_name: list[str] = []

    @fine.on_running
    def remember(flow, flow_run, state):  # type: ignore[no-untyped-def]
        fine_state_name.append(flow_run.name)

    seen.clear()
    fine()
    with pytest.raises(RuntimeError):
        broken()
    assert seen == ["running Running", "completed True", "failed RuntimeError: no"]


def test_crashed_and_cancellation_hooks_are_accepted() -> None:
    @flow(on_crashed=[lambda *a: None], on_cancellation=[lambda *a: None])
    def guarded() -> int:
        return 1

    @guarded.on_crashed
    def crashed(flow, flow_run, state):  # type: ignore[no-untyped-def]
        seen.append("crashed")

    assert guarded() == 1
    assert len(guarded.on_crashed_hooks) == 2 and len(guarded.on_cancellation_hooks) == 1


def test_negative_retry_jitter_is_refused() -> None:
    with pytest.raises(ValueError, match="retry_jitter_factor"):

        @task(retry_jitter_factor=-1)
        def jittery() -> None:
            return None


def test_an_upstream_failure_leaves_the_downstream_not_ready() -> None:
    ran: list[str] = []

    @task
    def upstream(item: str) -> str:
        if item == "c":
            raise Exception("this upstream task failed")
        return item + "+1"

    @task
    def downstream(item: str) -> str:
        ran.append(item)
        return item + "+2"

    @flow
    def demo() -> list[str]:
        first = upstream.map(["a", "b", "c", "d"])
        second = downstream.map(first)
        second.wait()
        waiting = downstream.submit("z", wait_for=[first[2]])
        tolerant = downstream.submit("t", wait_for=[allow_failure(first[2])])
        waiting.wait()
        states: list[State] = [f.state for f in [*second, waiting]]
        with pytest.raises(UnfinishedRun):
            waiting.result()
        tolerant.result()
        return [f"{s.type.value}/{s.name}" for s in states]

    assert demo() == ["COMPLETED/Completed", "COMPLETED/Completed", "PENDING/NotReady",
                      "COMPLETED/Completed", "PENDING/NotReady"]  # fmt: skip
    assert sorted(ran) == ["a+1", "b+1", "d+1", "t"]


def test_invalid_parameters_raise_parameter_type_error() -> None:
    @flow
    def typed(count: int) -> int:
        return count

    with pytest.raises(ParameterTypeError):
        typed("not a number")  # type: ignore[arg-type]
    assert typed("3") == 3  # type: ignore[arg-type]  # coerced, as pydantic does in Prefect


def test_to_deployment_takes_prefects_schedule_options(tmp_path: object) -> None:
    from flowbus.engine.errors import UsageError

    @flow
    def nightly(day: str = "today") -> str:
        return day

    spec = nightly.to_deployment("nightly", cron="0 6 * * *", interval=3600,
                                 parameters={"day": "mon"}, timezone="Europe/Paris")  # fmt: skip
    assert (spec.name, spec.queue, spec.parameters) == ("nightly/nightly", "serve-nightly",
                                                        {"day": "mon"})  # fmt: skip
    assert [type(s.schedule).__name__ for s in spec.schedules] == ["CronSchedule",
                                                                   "IntervalSchedule"]  # fmt: skip

    @flow
    def needs(day: str) -> str:
        return day

    with pytest.raises(UsageError, match="nobody to give it day"):
        needs.to_deployment("x", cron="0 6 * * *")
