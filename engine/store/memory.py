"""The in-memory event store: the twin used by unit tests of logic. Nothing is persisted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from flowbus.engine.errors import SequenceError
from flowbus.engine.records import EventRecord
from flowbus.engine.store.base import EventStore
from flowbus.engine.store.projection import (
    AUDIT_COLUMNS,
    DEPLOYMENT_COLUMNS,
    DOCUMENT_COLUMNS,
    FLOW_RUN_COLUMNS,
    LOG_COLUMNS,
    STATE_UPDATE_FIELDS,
    TASK_RUN_COLUMNS,
    ProjectionPlan,
    plan,
)
from flowbus.engine.store.views import (
    AuditView,
    DeploymentView,
    DocumentView,
    FlowRunView,
    LogLine,
    RunCount,
    RunFilter,
    StoredEvent,
    TaskRunView,
    deployment_view,
    document_view,
    flow_run_view,
    task_run_view,
)

Tables = dict[str, dict[Any, dict[str, Any]]]


def _empty_tables() -> Tables:
    return {
        "flow_runs": {},
        "task_runs": {},
        "logs": {},
        "deployments": {},
        "documents": {},
        "run_counts": {},
        "audit": {},
    }


def _count(tables: Tables, row: dict[str, Any], step: int) -> None:
    """Move ``run_counts`` by ``step`` for a run as it is now (the SQL backends' twin)."""
    key = (row["created"][:13], row["state_type"])
    counts = tables["run_counts"]
    runs = counts.get(key, {"runs": 0})["runs"] + step
    if runs:
        counts[key] = {"hour": key[0], "state_type": key[1], "runs": runs}
    else:
        counts.pop(key, None)


def _apply(tables: Tables, ops: ProjectionPlan) -> None:
    for row in ops.flow_inserts:
        tables["flow_runs"][row[0]] = dict(zip(FLOW_RUN_COLUMNS, row, strict=True))
        _count(tables, tables["flow_runs"][row[0]], 1)
    for row in ops.task_inserts:
        tables["task_runs"][row[0]] = dict(zip(TASK_RUN_COLUMNS, row, strict=True))
    for table, updates in (("flow_runs", ops.flow_updates), ("task_runs", ops.task_updates)):
        for params in updates:
            change = dict(zip(STATE_UPDATE_FIELDS, params, strict=True))
            current = tables[table].get(change["id"])
            if current is None:
                continue  # as an SQL UPDATE of a missing row: nothing happens
            if table == "flow_runs":
                _count(tables, current, -1)
            for name in ("state_type", "state_name", "state_message", "state_timestamp", "ended"):
                current[name] = change[name]
            current["started"] = current["started"] or change["started"]
            current["run_count"] += change["run_inc"]
            current["result"] = (
                change["result"] if change["result"] is not None else current["result"]
            )
            if table == "flow_runs":
                _count(tables, current, 1)
    for row in ops.logs:
        tables["logs"][(row[0], row[1])] = dict(zip(LOG_COLUMNS, row, strict=True))
    for row in ops.deployments:
        new = dict(zip(DEPLOYMENT_COLUMNS, row, strict=True))
        old = tables["deployments"].get(new["id"])
        if old is not None:
            new["created"] = old["created"]  # a redefinition keeps the first creation time
        tables["deployments"][new["id"]] = new
    _apply_documents(tables["documents"], ops)
    tables["audit"].update(
        {row[0]: dict(zip(AUDIT_COLUMNS, row, strict=True)) for row in ops.audit}
    )


def _apply_documents(documents: dict[Any, dict[str, Any]], ops: ProjectionPlan) -> None:
    for key in ops.document_deletes:
        documents.pop(key, None)
    for row in ops.documents:
        new = dict(zip(DOCUMENT_COLUMNS, row, strict=True))
        old = documents.get((new["kind"], new["name"]))
        if old is not None:
            new["created"] = old["created"]
        documents[(new["kind"], new["name"])] = new


#: The slot of a pruned event (its stream id matches no run).
_TOMBSTONE = EventRecord("", "", 0, "", "", {}, 0)


class MemoryEventStore(EventStore):
    """Event store held in dicts, with the same contract as the SQL backends."""

    def __init__(self) -> None:
        self.url = "memory://"
        self._events: list[EventRecord] = []
        self._ids: set[str] = set()
        self._heads: dict[str, int] = {}
        self._tables = _empty_tables()
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        return None

    async def append(self, records: Sequence[EventRecord]) -> int:
        async with self._lock:
            heads: dict[str, int] = {}
            fresh: list[EventRecord] = []
            seen: set[str] = set()
            for record in records:
                head = heads.get(record.stream_id, self._heads.get(record.stream_id, 0))
                if record.id in self._ids or record.id in seen:
                    continue
                if record.seq != head + 1:
                    raise SequenceError(record.stream_id, head + 1, record.seq)
                heads[record.stream_id] = record.seq
                seen.add(record.id)
                fresh.append(record)
            for record in fresh:
                # Round-trip through JSON so the twin stores exactly what a database would.
                stored = EventRecord.from_body(record.body(), len(self._events) + 1)
                self._events.append(stored)
            _apply(self._tables, plan(fresh))
            self._ids |= seen
            self._heads.update(heads)
            return len(fresh)

    async def head(self, stream_id: str) -> int:
        return self._heads.get(stream_id, 0)

    @staticmethod
    def _stored(record: EventRecord) -> StoredEvent:
        assert record.position is not None
        return StoredEvent(
            position=record.position,
            id=record.id,
            stream_id=record.stream_id,
            seq=record.seq,
            type=record.type,
            occurred=record.occurred,
            data=record.data,
        )

    async def read_stream(self, stream_id: str, after_seq: int = 0) -> list[StoredEvent]:
        return [
            self._stored(r) for r in self._events if r.stream_id == stream_id and r.seq > after_seq
        ]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        found: list[StoredEvent] = []
        for record in self._events[after_position:]:
            if len(found) == limit:
                break
            if record is not _TOMBSTONE:
                found.append(self._stored(record))
        return found

    @staticmethod
    def _flow_view(row: dict[str, Any]) -> FlowRunView:
        return flow_run_view(row)

    async def get_flow_run(self, run_id: str) -> FlowRunView | None:
        row = self._tables["flow_runs"].get(run_id)
        return self._flow_view(row) if row else None

    async def find_flow_runs(self, prefix: str, limit: int = 2) -> list[FlowRunView]:
        rows = sorted(
            (r for r in self._tables["flow_runs"].values() if r["id"].startswith(prefix)),
            key=lambda r: r["id"],
        )
        return [self._flow_view(r) for r in rows[:limit]]

    async def find_runs(self, runs: RunFilter, limit: int = 50) -> list[FlowRunView]:
        rows = [r for r in self._tables["flow_runs"].values() if runs.matches(r)]
        rows.sort(key=lambda r: (r["created"], r["id"]), reverse=True)
        return [self._flow_view(r) for r in rows[:limit]]

    async def count_runs_by_hour(self, created_after: str) -> list[RunCount]:
        return [
            RunCount(hour, state, row["runs"])
            for (hour, state), row in sorted(self._tables["run_counts"].items())
            if hour >= created_after[:13]
        ]

    async def list_task_runs(self, run_id: str) -> list[TaskRunView]:
        rows = [r for r in self._tables["task_runs"].values() if r["flow_run_id"] == run_id]
        rows.sort(key=lambda r: (r["created"], r["id"]))
        views = [task_run_view(row) for row in rows]
        return views

    async def get_logs(self, run_id: str, after_seq: int = 0, limit: int = 1000) -> list[LogLine]:
        rows = sorted(
            (
                r
                for (rid, seq), r in self._tables["logs"].items()
                if rid == run_id and seq > after_seq
            ),
            key=lambda r: r["seq"],
        )
        return [LogLine(**r) for r in rows[:limit]]

    async def get_deployment(self, name: str) -> DeploymentView | None:
        for row in self._tables["deployments"].values():
            if row["name"] == name:
                return deployment_view([row[c] for c in DEPLOYMENT_COLUMNS])
        return None

    async def list_deployments(self) -> list[DeploymentView]:
        rows = sorted(self._tables["deployments"].values(), key=lambda r: r["name"])
        return [deployment_view([r[c] for c in DEPLOYMENT_COLUMNS]) for r in rows]

    def _rebuilt(self) -> Tables:
        tables = _empty_tables()
        _apply(tables, plan([r for r in self._events if r is not _TOMBSTONE]))
        return tables

    async def get_document(self, kind: str, name: str) -> DocumentView | None:
        row = self._tables["documents"].get((kind, name))
        return document_view([row[c] for c in DOCUMENT_COLUMNS]) if row else None

    async def list_documents(self, kind: str) -> list[DocumentView]:
        rows = sorted(
            (r for (k, _), r in self._tables["documents"].items() if k == kind),
            key=lambda r: r["name"],
        )
        return [document_view([r[c] for c in DOCUMENT_COLUMNS]) for r in rows]

    async def list_audit(
        self,
        actor: str | None = None,
        since: str | None = None,
        limit: int = 100,
        subject: str | None = None,
    ) -> list[AuditView]:
        after = since or ""
        rows = [r for r in self._tables["audit"].values()
                if r["occurred"] >= after and actor in (None, r["actor"])
                and subject in (None, r["subject"])]  # fmt: skip
        rows.sort(key=lambda r: (r["occurred"], r["event_id"]), reverse=True)
        return [AuditView(**r) for r in rows[:limit]]

    async def prune(self, run_ids: Sequence[str]) -> int:
        async with self._lock:
            gone = {r for r in run_ids if r in self._tables["flow_runs"]}
            if not gone:
                return 0
            for run_id in gone:
                _count(self._tables, self._tables["flow_runs"].pop(run_id), -1)
            # Positions stay what they were (read_all pages by them): the events are dropped
            # from the list's slots, not the slots themselves.
            self._events = [
                _TOMBSTONE if r.stream_id in gone else r for r in self._events
            ]  # fmt: skip
            for table, column in (("task_runs", "flow_run_id"), ("logs", "run_id"),
                                  ("audit", "stream_id")):  # fmt: skip
                rows = self._tables[table]
                for key in [k for k, row in rows.items() if row[column] in gone]:
                    del rows[key]
            for run_id in gone:
                self._heads.pop(run_id, None)
            return len(gone)

    async def rebuild_projections(self) -> int:
        self._tables = self._rebuilt()
        return len(self._events)

    async def verify_projections(self) -> list[str]:
        rebuilt = self._rebuilt()
        differences = []
        for table, rows in self._tables.items():
            for key in rows.keys() | rebuilt[table].keys():
                if rows.get(key) != rebuilt[table].get(key):
                    differences.append(
                        f"{table}: {key}: live {rows.get(key)} rebuilt {rebuilt[table].get(key)}"
                    )
        return differences
