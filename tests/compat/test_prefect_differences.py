"""Behaviours Prefect 3 documents that flowbus once did differently, each written from
Prefect's documentation and run with the import line changed."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from flowbus import flow, runtime, task
from flowbus.cache_policies import INPUTS
from flowbus.exceptions import ParameterTypeError
from flowbus.states import Failed, State


def test_a_cached_task_called_outside_any_flow_runs_once(tmp_path: Path) -> None:
    calls: list[int] = []

    @task(cache_policy=INPUTS)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert square(4) == 16
    assert square(4) == 16  # from the cache
    assert square(5) == 25
    assert calls == [4, 5]


def test_a_task_returning_a_failed_state_hands_that_state_back() -> None:
    @task
    def check() -> State:
        return Failed(message="the data was late")

    @flow
    def pipeline() -> str:
        state = check()
        assert isinstance(state, State) and state.is_failed()
        return str(state.message)

    assert pipeline() == "the data was late"


def test_run_names_from_functions_and_templates_see_the_parameters() -> None:
    def task_name() -> str:
        return f"n-is-{runtime.task_run.parameters['n']}"

    def flow_name() -> str:
        return f"for-{runtime.flow_run.parameters['who']}"

    @task(task_run_name=task_name)
    def named(n: int) -> str:
        return str(runtime.task_run.name)

    @task(task_run_name="hello-{name}-on-{date:%A}")
    def greeted(name: str, date: datetime.datetime) -> str:
        return str(runtime.task_run.name)

    @task(task_run_name="part-{i}")
    def part(i: int) -> str:
        return str(runtime.task_run.name)

    @flow(flow_run_name=flow_name)
    def pipeline(who: str) -> list[str]:
        monday = datetime.datetime(2026, 12, 7)
        parts = [f.result() for f in part.map([1, 2])]
        return [str(runtime.flow_run.name), named(3), greeted("ada", monday), *parts]

    assert pipeline("ada") == ["for-ada", "n-is-3", "hello-ada-on-Monday", "part-1", "part-2"]


def test_invalid_parameters_raise_parameter_type_error() -> None:
    @flow
    def typed(n: int) -> int:
        return n

    with pytest.raises(ParameterTypeError) as caught:
        typed("not a number")  # type: ignore[arg-type]
    assert type(caught.value).__name__ == "ParameterTypeError"
