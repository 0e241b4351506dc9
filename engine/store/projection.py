"""What each event does to the projections, as a plan of row operations shared by all backends.

The plan is computed in Python once; each backend applies it (SQL with ``executemany``, the memory
twin with dicts). Live recording and ``rebuild`` go through the same plan, so a rebuilt projection
equals the live one by construction; ``verify`` checks that it really does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from flowbus.engine.artifacts import artifact_document
from flowbus.engine.audit import audit_row
from flowbus.engine.clock import canonical
from flowbus.engine.event_types import EventType
from flowbus.engine.records import EventRecord
from flowbus.engine.store.views import (
    AuditView,
    DeploymentView,
    DocumentView,
    FlowRunView,
    LogLine,
    TaskRunView,
    columns_of,
)

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})

# The tables' columns, written once: the read models' fields (``views.py``). The SQL
# migrations of both backends are checked against them (tests/integration/test_store_schema.py).
FLOW_RUN_COLUMNS = columns_of(FlowRunView)
TASK_RUN_COLUMNS = columns_of(TaskRunView)
DEPLOYMENT_COLUMNS = columns_of(DeploymentView)
#: Named configuration recorded as events: variables, blocks, block types, limits, automations.
DOCUMENT_COLUMNS = columns_of(DocumentView)
#: The audit trail: every event with an actor.
AUDIT_COLUMNS = columns_of(AuditView)
LOG_COLUMNS = columns_of(LogLine)
#: The order of a state update's parameters (the row id comes last).
STATE_UPDATE_FIELDS = (
    "state_type",
    "state_name",
    "state_message",
    "state_timestamp",
    "started",
    "ended",
    "run_inc",
    "result",
    "id",
)


iso = canonical
# Timestamps inside an EventRecord are canonical already (made by ``clock.now_iso`` or
# canonicalised when a record is decoded from outside), so the plan copies them as they are.


def _json(value: Any) -> str:
    if not value:
        return "[]" if isinstance(value, list) else "{}"
    return orjson.dumps(value, option=orjson.OPT_UTC_Z).decode()


@dataclass
class ProjectionPlan:
    """Row operations for one batch of events, in the order they must be applied."""

    flow_inserts: list[tuple[Any, ...]] = field(default_factory=list)
    task_inserts: list[tuple[Any, ...]] = field(default_factory=list)
    flow_updates: list[tuple[Any, ...]] = field(default_factory=list)
    task_updates: list[tuple[Any, ...]] = field(default_factory=list)
    logs: list[tuple[Any, ...]] = field(default_factory=list)
    #: Full deployment rows, the latest per deployment: inserted, or replacing all but
    #: ``created`` (the first definition's time) of an existing row.
    deployments: list[tuple[Any, ...]] = field(default_factory=list)
    #: Documents deleted in the batch, as (kind, name); applied before ``documents``.
    document_deletes: list[tuple[str, str]] = field(default_factory=list)
    #: Full document rows, the latest per (kind, name): inserted, or replacing all but
    #: ``created`` of an existing row.
    documents: list[tuple[Any, ...]] = field(default_factory=list)
    #: Audit rows (``engine/audit.py``): inserted.
    audit: list[tuple[Any, ...]] = field(default_factory=list)


_DEPLOYMENT_CREATED = DEPLOYMENT_COLUMNS.index("created")


def _deployment_row(data: dict[str, Any]) -> tuple[Any, ...]:
    return (
        data["stream_id"],
        data["name"],
        data["flow_name"],
        data["deployment_name"],
        data["entrypoint"],
        data["working_dir"],
        data["queue"],
        _json(data.get("parameters") or {}),
        _json(data.get("parameter_schema") or {}),
        _json(data.get("tags") or []),
        data.get("description"),
        data["occurred"],  # created: kept from the first definition when the row exists
        data["occurred"],
        data["seq"],
        _json(data.get("schedules") or []),
        data.get("catchup") or "latest",
        data.get("overlap") or "allow",
        data.get("concurrency_limit"),
        data.get("collision") or "enqueue",
    )


def _state_columns(data: dict[str, Any]) -> tuple[Any, ...]:
    """What a state does to a row: type, name, message, timestamp, started, ended, run_inc."""
    state = data["state"]
    ts = state["timestamp"]
    running = state["type"] == "RUNNING"
    return (
        state["type"],
        state["name"],
        state["message"],
        ts,
        ts if running else None,
        ts if state["type"] in TERMINAL else None,
        1 if running else 0,
    )


def _state_update(row_id: str, data: dict[str, Any]) -> tuple[Any, ...]:
    return (*_state_columns(data), data.get("result"), row_id)


def _created_columns(data: dict[str, Any]) -> tuple[Any, ...]:
    """The state, time and counters of a newly created run row (state ... result columns)."""
    kind, name, message, ts, started, ended, run_count = _state_columns(data)
    return (kind, name, message, ts, data["occurred"], started, ended, run_count, None)


def _flow_insert(data: dict[str, Any]) -> tuple[Any, ...]:
    return (
        data["stream_id"],
        data["flow_name"],
        data["name"],
        data.get("flow_version"),
        data.get("deployment"),
        data.get("parent_run_id"),
        data.get("parent_task_run_id"),
        _json(data.get("parameters") or {}),
        _json(data.get("tags") or []),
        *_created_columns(data),
    )


def _task_insert(data: dict[str, Any]) -> tuple[Any, ...]:
    return (
        data["task_run_id"],
        data["stream_id"],
        data["task_key"],
        data["name"],
        _json(data.get("tags") or []),
        data.get("map_index"),
        data.get("cache_key"),
        _json(data.get("upstream") or []),
        *_created_columns(data),
    )


# Both run tables end with the same nine columns, in this order: a fold writes at fixed offsets.
_TAIL = (
    "state_type",
    "state_name",
    "state_message",
    "state_timestamp",
    "created",
    "started",
    "ended",
    "run_count",
    "result",
)
assert FLOW_RUN_COLUMNS[-9:] == _TAIL and TASK_RUN_COLUMNS[-9:] == _TAIL


def _fold(row: list[Any], data: dict[str, Any]) -> None:
    """Apply a state event to a row inserted in the same batch, as the SQL UPDATE would."""
    state = data["state"]
    kind = state["type"]
    ts = state["timestamp"]
    base = len(row) - 9
    row[base] = kind
    row[base + 1] = state["name"]
    row[base + 2] = state["message"]
    row[base + 3] = ts
    if kind == "RUNNING":
        row[base + 7] += 1
        if row[base + 5] is None:
            row[base + 5] = ts
    row[base + 6] = ts if kind in TERMINAL else None
    result = data.get("result")
    if result is not None:
        row[base + 8] = result


def plan(records: Iterable[EventRecord]) -> ProjectionPlan:
    """The row operations that ``records`` (in log order) make to the projections.

    A state change of a run created in the same batch is folded into that run's insert: one row
    write instead of three for the common created-running-completed task run.
    """
    out = ProjectionPlan()
    new_flows: dict[str, list[Any]] = {}
    new_tasks: dict[str, list[Any]] = {}
    deployments: dict[str, tuple[Any, ...]] = {}
    documents = _DocumentChanges()
    for record in records:
        data = record.data
        kind = record.type
        _audit(out, kind, data)
        if kind == EventType.TASK_RUN_STATE:
            row = new_tasks.get(data["task_run_id"])
            if row is None:
                out.task_updates.append(_state_update(data["task_run_id"], data))
            else:
                _fold(row, data)
        elif kind == EventType.TASK_RUN_CREATED:
            new_tasks[data["task_run_id"]] = list(_task_insert(data))
        elif kind == EventType.LOG:
            out.logs.append(
                (
                    data["stream_id"],
                    data["seq"],
                    data.get("task_run_id"),
                    data["occurred"],
                    data["level"],
                    data["logger"],
                    data["message"],
                )
            )
        elif kind == EventType.FLOW_RUN_STATE:
            row = new_flows.get(data["stream_id"])
            if row is None:
                out.flow_updates.append(_state_update(data["stream_id"], data))
            else:
                _fold(row, data)
        elif kind == EventType.FLOW_RUN_CREATED:
            new_flows[data["stream_id"]] = list(_flow_insert(data))
        elif kind == EventType.DEPLOYMENT_SAVED:
            _save_deployment(deployments, data)
        else:
            documents.apply(kind, data)
    out.document_deletes, out.documents = documents.deletes, documents.rows()
    out.flow_inserts = [tuple(row) for row in new_flows.values()]
    out.task_inserts = [tuple(row) for row in new_tasks.values()]
    out.deployments = list(deployments.values())
    out.flow_updates = merge_updates(out.flow_updates)
    out.task_updates = merge_updates(out.task_updates)
    for name in ("flow_inserts", "task_inserts", "flow_updates", "task_updates", "logs"):
        setattr(out, name, _without_nul(getattr(out, name)))
    out.deployments = _without_nul(out.deployments)
    out.audit = _without_nul(out.audit)
    return out


def _audit(out: ProjectionPlan, kind: str, data: dict[str, Any]) -> None:
    """An event someone caused (it names its actor) is a line of the audit trail."""
    if data.get("actor"):
        row = audit_row(kind, data)
        if row is not None:
            out.audit.append(row)


def _save_deployment(deployments: dict[str, tuple[Any, ...]], data: dict[str, Any]) -> None:
    saved = _deployment_row(data)
    earlier = deployments.get(saved[0])
    if earlier is not None:  # redefined within the batch: keep the first creation time
        saved = (
            *saved[:_DEPLOYMENT_CREATED],
            earlier[_DEPLOYMENT_CREATED],
            *saved[_DEPLOYMENT_CREATED + 1 :],
        )
    deployments[saved[0]] = saved


class _DocumentChanges:
    """A batch's document events, reduced to deletes and then upserts. A delete followed by a
    save in the same batch gives both, so the result is the same however a replay cuts the log
    into batches."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str], tuple[Any, ...] | None] = {}
        self.deletes: list[tuple[str, str]] = []

    def apply(self, kind: str, data: dict[str, Any]) -> None:
        """A document event, or a keyed artifact (the latest of its key is a document)."""
        if kind not in (EventType.DOCUMENT_SAVED, EventType.DOCUMENT_DELETED):
            if kind in (EventType.ARTIFACT_CREATED, EventType.ARTIFACT_UPDATED) and data.get("key"):
                self.apply_artifact(data)
            return
        key = (data["kind"], data["name"])
        if kind == EventType.DOCUMENT_DELETED:
            self.latest[key] = None
            if key not in self.deletes:
                self.deletes.append(key)
            return
        earlier = self.latest.get(key)
        created = earlier[3] if earlier is not None else data["occurred"]
        self.latest[key] = (*key, _json(data["body"]), created, data["occurred"], data["seq"])

    def apply_artifact(self, data: dict[str, Any]) -> None:
        """A keyed artifact: the latest of its key becomes the ``artifact`` document."""
        key = ("artifact", data["key"])
        earlier = self.latest.get(key)
        body = artifact_document(data, orjson.loads(earlier[2]) if earlier else None)
        created = earlier[3] if earlier is not None else data["occurred"]
        self.latest[key] = (*key, _json(body), created, data["occurred"], data["seq"])

    def rows(self) -> list[tuple[Any, ...]]:
        return _without_nul([row for row in self.latest.values() if row is not None])


def _without_nul(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Projection text never holds NUL (PostgreSQL's TEXT cannot): it becomes U+FFFD.

    The event log keeps the exact text (JSON escapes NUL); only the derived rows change, the same
    way in every backend, so projections stay identical across them.
    """
    cleaned = []
    for row in rows:
        if any(type(value) is str and "\x00" in value for value in row):
            row = tuple(
                value.replace("\x00", "\ufffd") if type(value) is str else value for value in row
            )
        cleaned.append(row)
    return cleaned


def merge_updates(updates: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One update per row with the combined effect of that row's updates, in order.

    Applying the merged update equals applying each in turn: the last state wins, ``started``
    keeps the first candidate, ``ended`` is the last value, run counts add up, and the last
    result given wins. One update per row lets a backend apply them all in one statement.
    """
    if len(updates) < 2:
        return updates
    merged: dict[Any, list[Any]] = {}
    for update in updates:
        row = merged.get(update[-1])
        if row is None:
            merged[update[-1]] = list(update)
            continue
        row[0:4] = update[0:4]
        row[4] = row[4] or update[4]
        row[5] = update[5]
        row[6] += update[6]
        if update[7] is not None:
            row[7] = update[7]
    return [tuple(row) for row in merged.values()]
