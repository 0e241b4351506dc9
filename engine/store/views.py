"""Read models of the store's projections; their dicts are the CLI's stable ``--json`` output."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any


class _View:
    """Rows read from the store's own tables: plain frozen dataclasses (no validation needed,
    and no pydantic on the path that records a local run)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclasses.dataclass(frozen=True, slots=True)
class FlowRunView(_View):
    id: str
    flow_name: str
    name: str
    flow_version: str | None
    deployment: str | None
    parent_run_id: str | None
    parent_task_run_id: str | None
    parameters: dict[str, Any]
    tags: list[str]
    state_type: str
    state_name: str
    state_message: str | None
    state_timestamp: str
    created: str
    started: str | None
    ended: str | None
    run_count: int
    result: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class TaskRunView(_View):
    id: str
    flow_run_id: str
    task_key: str
    name: str
    tags: list[str]
    map_index: int | None
    cache_key: str | None
    upstream: list[str]
    state_type: str
    state_name: str
    state_message: str | None
    state_timestamp: str
    created: str
    started: str | None
    ended: str | None
    run_count: int
    result: str | None

    @property
    def retries(self) -> int:
        """How many times the task run was retried (runs after the first)."""
        return max(self.run_count - 1, 0)


@dataclasses.dataclass(frozen=True, slots=True)
class LogLine(_View):
    run_id: str
    seq: int
    task_run_id: str | None
    timestamp: str
    level: int
    logger: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class DeploymentView(_View):
    id: str
    name: str
    flow_name: str
    deployment_name: str
    entrypoint: str
    working_dir: str
    queue: str
    parameters: dict[str, Any]
    parameter_schema: dict[str, Any]
    tags: list[str]
    description: str | None
    created: str
    updated: str
    version: int


def flow_run_view(row: Mapping[str, Any]) -> FlowRunView:
    """A flow run from its row by column name (its JSON columns parsed)."""
    data = dict(row)
    data["parameters"] = json.loads(data["parameters"])
    data["tags"] = json.loads(data["tags"])
    return FlowRunView(**data)


def task_run_view(row: Mapping[str, Any]) -> TaskRunView:
    """A task run from its row by column name (its JSON columns parsed)."""
    data = dict(row)
    data["tags"] = json.loads(data["tags"])
    data["upstream"] = json.loads(data["upstream"])
    return TaskRunView(**data)


def deployment_view(row: Sequence[Any]) -> DeploymentView:
    """A deployment from its row (columns in ``projection.DEPLOYMENT_COLUMNS`` order)."""
    values = list(row)
    for index in (7, 8, 9):  # parameters, parameter_schema, tags are JSON text
        values[index] = json.loads(values[index])
    return DeploymentView(*values)


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEvent(_View):
    position: int
    id: str
    stream_id: str
    seq: int
    type: str
    occurred: str
    data: dict[str, Any]
