"""Read models of the store's projections; their dicts are the CLI's stable ``--json`` output."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowbus.engine.events import StoredEventModel


def columns_of(view: type[_View]) -> tuple[str, ...]:
    """The columns of a view's table, in order: its fields (the one place they are written)."""
    return tuple(field.name for field in dataclasses.fields(view))  # type: ignore[arg-type]


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

    def to_dict(self) -> dict[str, Any]:
        """As JSON: the short repr of the result is ``result_summary`` (a run's detail adds the
        result itself as ``result``)."""
        return _summary_renamed(_View.to_dict(self))


def _summary_renamed(data: dict[str, Any]) -> dict[str, Any]:
    data["result_summary"] = data.pop("result")
    return data


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

    def to_dict(self) -> dict[str, Any]:
        return _summary_renamed(_View.to_dict(self))

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
class AuditView(_View):
    """One line of the audit trail: an event someone caused (``engine/audit.py``)."""

    event_id: str
    occurred: str
    actor: str
    action: str
    subject: str
    stream_id: str


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
    #: ``DeploymentSchedule`` objects as JSON (``{"id", "schedule": {"kind", ...}, "active"}``).
    schedules: list[dict[str, Any]]
    catchup: str
    overlap: str
    concurrency_limit: int | None
    collision: str


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
    for index in (7, 8, 9, 14):  # parameters, parameter_schema, tags, schedules are JSON text
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

    def typed(self) -> StoredEventModel:
        """The event as its model (``flowbus.engine.events``): typed access for its readers."""
        from flowbus.engine.events import parse_event

        return parse_event(self.data)


@dataclasses.dataclass(frozen=True, slots=True)
class RunFilter:
    """Which flow runs a listing returns (newest first); every field is optional.

    ``state`` matches a state type or name; ``tag`` one of the run's tags; ``created_after`` and
    ``created_before`` bound the creation time (ISO 8601); ``cursor`` continues a listing after
    its last row: the ``(created, id)`` of that row (keyset pagination, so a page costs the
    same however deep it is).
    """

    state: str | None = None
    flow_name: str | None = None
    deployment: str | None = None
    tag: str | None = None
    parent_run_id: str | None = None
    created_after: str | None = None
    created_before: str | None = None
    cursor: tuple[str, str] | None = None

    def matches(self, row: Mapping[str, Any]) -> bool:
        """The same filter in Python (the memory store's twin of the SQL)."""
        tags = row["tags"] if isinstance(row["tags"], list) else json.loads(row["tags"])
        return (
            (self.state is None or self.state in (row["state_type"], row["state_name"]))
            and (self.flow_name is None or row["flow_name"] == self.flow_name)
            and (self.deployment is None or row["deployment"] == self.deployment)
            and (self.tag is None or self.tag in tags)
            and (self.parent_run_id is None or row["parent_run_id"] == self.parent_run_id)
            and (self.created_after is None or row["created"] >= self.created_after)
            and (self.created_before is None or row["created"] < self.created_before)
            and (self.cursor is None or (row["created"], row["id"]) < self.cursor)
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RunCount:
    """How many flow runs created in one hour (``hour``: ``2026-11-24T06``, UTC) are now in
    one state type."""

    hour: str
    state_type: str
    count: int


@dataclasses.dataclass(frozen=True, slots=True)
class DocumentView(_View):
    """A named piece of configuration (a variable, a block, ...): its latest body."""

    kind: str
    name: str
    body: Any
    created: str
    updated: str
    version: int


def document_view(row: Sequence[Any]) -> DocumentView:
    kind, name, body, created, updated, version = row
    return DocumentView(kind, name, json.loads(body), created, updated, int(version))
