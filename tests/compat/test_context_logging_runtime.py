"""prefect.context, prefect.logging, prefect.runtime and the tags context manager."""

from __future__ import annotations

import asyncio
import logging

import pytest

import flowbus
from flowbus import flow, runtime, tags, task
from flowbus.context import FlowRunContext, TaskRunContext, get_run_context
from flowbus.exceptions import MissingContextError
from flowbus.logging import disable_run_logger, get_logger, get_run_logger


def test_get_run_context_inside_and_outside_runs() -> None:
    @task
    def inner() -> tuple[str, str]:
        context = get_run_context()
        assert isinstance(context, TaskRunContext)
        return context.task_run.name, context.task.name

    @flow
    def outer() -> tuple[str, tuple[str, str]]:
        context = get_run_context()
        assert isinstance(context, FlowRunContext)
        assert FlowRunContext.get() is context and TaskRunContext.get() is None
        return context.flow_run.flow_name, inner()

    assert outer() == ("outer", ("inner-0", "inner"))
    with pytest.raises(MissingContextError):
        get_run_context()


def test_tags_context_manager_tags_flow_and_task_runs() -> None:
    @task(tags=["own"])
    def tagged() -> list[str]:
        return sorted(get_run_context().task_run.tags)

    @flow
    def pipeline() -> tuple[list[str], list[str], list[str]]:
        with tags("db", "nightly"):
            inside = tagged()
        return sorted(runtime.flow_run.tags), inside, tagged()

    with tags("outer"):
        flow_tags, inside, outside = pipeline()
    assert flow_tags == ["outer"]
    assert inside == ["db", "nightly", "outer", "own"]
    assert outside == ["outer", "own"]
    assert tags is flowbus.tags


def test_run_logger_records_lines_and_fails_outside_a_run(caplog: pytest.LogCaptureFixture) -> None:
    @task
    def talk(rows: int) -> None:
        logger = get_run_logger()
        logger.info("loaded %d rows", rows)
        logger.warning("careful")

    @flow
    def pipeline() -> None:
        talk(3)

    pipeline()
    with pytest.raises(MissingContextError):
        get_run_logger()
    with disable_run_logger():
        talk.fn(3)  # unit-testing a task's function: its log lines are dropped
    logger = get_logger("mine")
    assert isinstance(logger, logging.Logger) and logger.name == "flowbus.mine"


def test_runtime_outside_and_inside_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert runtime.flow_run.id is None and runtime.flow_run.parameters == {}
    assert runtime.task_run.name is None and runtime.deployment.name is None
    monkeypatch.setenv("FLOWBUS__RUNTIME__FLOW_RUN__NAME", "from-env")
    assert runtime.flow_run.name == "from-env"
    monkeypatch.delenv("FLOWBUS__RUNTIME__FLOW_RUN__NAME")

    @task(retries=1)
    def attempt(x: int) -> dict[str, object]:
        if runtime.task_run.run_count == 1:
            raise RuntimeError("first attempt fails")
        return {
            "task_name": runtime.task_run.task_name,
            "name": runtime.task_run.name,
            "run_count": runtime.task_run.run_count,
            "parameters": runtime.task_run.parameters,
        }

    @flow(flow_run_name="report-{day}")
    def pipeline(day: str) -> dict[str, object]:
        return {
            "id": runtime.flow_run.id == get_run_context().flow_run.id,
            "name": runtime.flow_run.name,
            "flow_name": runtime.flow_run.flow_name,
            "parameters": runtime.flow_run.parameters,
            "run_count": runtime.flow_run.run_count,
            "scheduled": runtime.flow_run.scheduled_start_time is not None,
            "deployment": runtime.deployment.name,
            "task": attempt(7),
        }

    assert pipeline("mon") == {
        "id": True,
        "name": "report-mon",
        "flow_name": "pipeline",
        "parameters": {"day": "mon"},
        "run_count": 1,
        "scheduled": True,
        "deployment": None,
        "task": {
            "task_name": "attempt",
            "name": "attempt-0",
            "run_count": 2,
            "parameters": {"x": 7},
        },
    }


def test_runtime_in_an_async_flow() -> None:
    @flow
    async def pipeline() -> str:
        await asyncio.sleep(0)
        return runtime.flow_run.flow_name

    assert asyncio.run(pipeline()) == "pipeline"
