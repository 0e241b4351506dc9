"""What the current run is, read as attributes (Prefect's ``prefect.runtime``).

    from flowbus import runtime
    runtime.flow_run.name, runtime.flow_run.parameters, runtime.task_run.run_count

Outside a run each attribute is empty (None, ``{}`` or ``[]``), unless the environment sets it:
``FLOWBUS__RUNTIME__FLOW_RUN__NAME=x`` makes ``runtime.flow_run.name`` "x" there, which helps
to test code that reads it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flowbus.engine.context import FlowRunContext, flow_run_var, task_run_var


def _flow_ctx() -> FlowRunContext | None:
    task_ctx = task_run_var.get()
    return task_ctx.flow_run_context if task_ctx else flow_run_var.get()


class _Namespace:
    """Attributes computed from the current context on each read."""

    def __init__(self, prefix: str, getters: dict[str, Callable[[], Any]], empty: Any) -> None:
        self._prefix = prefix
        self._getters = getters
        self._empty = empty

    def __getattr__(self, name: str) -> Any:
        getter = self._getters.get(name)
        if getter is None:
            raise AttributeError(f"runtime.{self._prefix} has no attribute {name!r}")
        override = os.environ.get(f"FLOWBUS__RUNTIME__{self._prefix.upper()}__{name.upper()}")
        if override is not None:
            return override
        value = getter()
        return self._empty.get(name) if value is None else value

    def __dir__(self) -> list[str]:
        return sorted(self._getters)


def _flow(attr: Callable[[FlowRunContext], Any]) -> Callable[[], Any]:
    def read() -> Any:
        context = _flow_ctx()
        return attr(context) if context is not None else None

    return read


def _task(attr: Callable[[Any], Any]) -> Callable[[], Any]:
    def read() -> Any:
        context = task_run_var.get()
        return attr(context) if context is not None else None

    return read


def _deployment_id(context: FlowRunContext) -> str | None:
    from flowbus.engine.deployments import deployment_id

    name = context.flow_run.deployment
    return deployment_id(name) if name else None


_EMPTY_COLLECTIONS: dict[str, Any] = {"parameters": {}, "tags": [], "job_variables": {}}

flow_run = _Namespace(
    "flow_run",
    {
        "id": _flow(lambda c: c.flow_run.id),
        "name": _flow(lambda c: c.flow_run.name),
        "flow_name": _flow(lambda c: c.flow_run.flow_name),
        "flow_version": _flow(lambda c: c.flow.version),
        "parameters": _flow(lambda c: dict(c.flow_run.parameters)),
        "tags": _flow(lambda c: list(c.flow_run.tags)),
        "run_count": _flow(lambda c: c.flow_run.run_count),
        "scheduled_start_time": _flow(
            lambda c: datetime.fromisoformat(c.flow_run.expected_start_time)
        ),
        "parent_flow_run_id": _flow(lambda c: c.flow_run.parent_run_id),
        "root_flow_run_id": _flow(lambda c: c.flow_run.parent_run_id or c.flow_run.id),
        "deployment_id": _flow(_deployment_id),
        "deployment_name": _flow(lambda c: c.flow_run.deployment),
        "job_variables": _flow(lambda c: {}),
    },
    _EMPTY_COLLECTIONS,
)

task_run = _Namespace(
    "task_run",
    {
        "id": _task(lambda c: c.task_run.id),
        "name": _task(lambda c: c.task_run.name),
        "task_name": _task(lambda c: c.task.name),
        "run_count": _task(lambda c: c.task_run.run_count),
        "parameters": _task(lambda c: dict(c.bound_parameters())),
        "tags": _task(lambda c: list(c.task_run.tags)),
        "flow_run_id": _task(lambda c: c.task_run.flow_run_id),
    },
    _EMPTY_COLLECTIONS,
)

deployment = _Namespace(
    "deployment",
    {
        "id": _flow(_deployment_id),
        "name": _flow(
            lambda c: c.flow_run.deployment.split("/", 1)[1] if c.flow_run.deployment else None
        ),
        "flow_run_id": _flow(lambda c: c.flow_run.id if c.flow_run.deployment else None),
        "parameters": _flow(
            lambda c: dict(c.flow_run.parameters) if c.flow_run.deployment else None
        ),
        "version": _flow(lambda c: c.flow.version if c.flow_run.deployment else None),
    },
    _EMPTY_COLLECTIONS,
)

__all__ = ["deployment", "flow_run", "task_run"]
