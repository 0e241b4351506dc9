"""Read models of the store's projections. Their JSON is the stable ``--json`` output of the CLI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


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


class LogLine(_View):
    run_id: str
    seq: int
    task_run_id: str | None
    timestamp: str
    level: int
    logger: str
    message: str


class StoredEvent(_View):
    position: int
    id: str
    run_id: str
    seq: int
    type: str
    occurred: str
    data: dict[str, Any]
