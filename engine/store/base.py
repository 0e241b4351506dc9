"""The event store's contract: an append-only log with per-run sequences, plus projections."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flowbus.engine.errors import SequenceError, VersionConflict
from flowbus.engine.records import EventRecord, make_record
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
)

T = TypeVar("T")
#: What a decision gives: its reply, and the events to append as (type, fields).
Decision = tuple[T, list[tuple[str, dict[str, Any]]]]


class EventStore(abc.ABC):
    """An event log with projections updated in the same transaction as each append.

    Every backend (memory, SQLite, PostgreSQL) passes the same contract test suite.
    """

    url: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; the store may be opened again."""

    async def __aenter__(self) -> EventStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def append(self, records: Sequence[EventRecord]) -> int:
        """Append events atomically and project them; return how many were new.

        An event already in the log (same id at its place in its stream) is skipped. An event
        whose ``seq`` is not the next one of its stream (a gap, or a duplicate under another id)
        raises ``SequenceError`` and nothing of the batch is written.
        """

    async def append_expecting(
        self, stream_id: str, version: int, records: Sequence[EventRecord]
    ) -> int:
        """Append ``records`` (numbered ``version + 1``, ``version + 2``, ... in ``stream_id``)
        only if the stream is still at ``version``, as a decision read it; otherwise raise
        ``VersionConflict`` and write nothing. Returns how many were new (a batch already in
        the log, same ids at the same places, is a no-op as with ``append``)."""
        for offset, record in enumerate(records, start=1):
            if record.stream_id != stream_id or record.seq != version + offset:
                raise ValueError(f"record {record.id} is not at {stream_id}#{version + offset}")
        try:
            return await self.append(records)
        except SequenceError as exc:
            raise VersionConflict(stream_id, version, await self.head(stream_id)) from exc

    async def transact(
        self,
        stream_id: str,
        decide: Callable[[list[StoredEvent]], Decision[T]],
        attempts: int = 10,
    ) -> T:
        """Read a stream, ``decide`` on its events, append the events decided only if nothing
        was appended meanwhile; on a conflict read again and decide again. ``decide`` returns
        (its reply, [(event type, fields), ...]) and does no I/O of its own, so deciding twice
        is harmless. No lock is held while it decides."""
        for _ in range(attempts):
            events = await self.read_stream(stream_id)
            version = events[-1].seq if events else 0
            reply, decided = decide(events)
            if not decided:
                return reply
            records = [
                make_record(stream_id, version + offset, type_, fields)
                for offset, (type_, fields) in enumerate(decided, start=1)
            ]
            try:
                await self.append_expecting(stream_id, version, records)
            except VersionConflict:
                continue
            return reply
        raise VersionConflict(stream_id, version, await self.head(stream_id))

    async def append_next(
        self, stream_id: str, type_: str, fields: dict[str, Any], attempts: int = 5
    ) -> None:
        """Append one event at the end of a stream that another process may be writing at the
        same moment (a deployment, a document): on a sequence clash, read the head again."""
        for attempt in range(attempts):
            head = await self.head(stream_id)
            try:
                await self.append([make_record(stream_id, head + 1, type_, dict(fields))])
                return
            except SequenceError:
                if attempt == attempts - 1:
                    raise

    @abc.abstractmethod
    async def head(self, stream_id: str) -> int:
        """The last sequence number recorded in a stream (0 when it has none)."""

    async def heads(self, stream_ids: Sequence[str]) -> dict[str, int]:
        """The last sequence number of each of many streams (0 for one with none), in as few
        reads as the backend allows: many waiters are answered with one query."""
        return {stream_id: await self.head(stream_id) for stream_id in stream_ids}

    @abc.abstractmethod
    async def read_stream(self, stream_id: str, after_seq: int = 0) -> list[StoredEvent]:
        """A stream's events (a flow run's, say) in sequence order."""

    @abc.abstractmethod
    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Events of all runs in global order, after a position."""

    @abc.abstractmethod
    async def get_flow_run(self, run_id: str) -> FlowRunView | None:
        """One flow run's current projection, or None."""

    @abc.abstractmethod
    async def find_flow_runs(self, prefix: str, limit: int = 2) -> list[FlowRunView]:
        """Flow runs whose id starts with ``prefix`` (so users can type short ids)."""

    async def list_flow_runs(
        self,
        state: str | None = None,
        flow_name: str | None = None,
        limit: int = 50,
        parent_run_id: str | None = None,
        *,
        deployment: str | None = None,
        tag: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
        cursor: tuple[str, str] | None = None,
    ) -> list[FlowRunView]:
        """Flow runs, newest first, filtered as ``RunFilter`` describes."""
        runs = RunFilter(
            state, flow_name, deployment, tag, parent_run_id, created_after, created_before, cursor
        )
        return await self.find_runs(runs, limit)

    @abc.abstractmethod
    async def find_runs(self, runs: RunFilter, limit: int = 50) -> list[FlowRunView]:
        """Flow runs that pass ``runs``, newest first."""

    @abc.abstractmethod
    async def count_runs_by_hour(self, created_after: str) -> list[RunCount]:
        """Flow runs created in the hour ``created_after`` (ISO 8601, UTC) falls in and later,
        counted by that hour and their current state type (what a dashboard draws), from a
        projection of one row per hour and state: the cost does not depend on the number of
        runs."""

    async def count_runs_by_state(self) -> dict[str, int]:
        """Every flow run counted by its current state type (summed from the hourly counts:
        the cost does not depend on the number of runs)."""
        totals: dict[str, int] = {}
        for count in await self.count_runs_by_hour("0000-01-01T00:00:00Z"):
            totals[count.state_type] = totals.get(count.state_type, 0) + count.count
        return totals

    @abc.abstractmethod
    async def list_task_runs(self, run_id: str) -> list[TaskRunView]:
        """A flow run's task runs in creation order."""

    @abc.abstractmethod
    async def get_logs(self, run_id: str, after_seq: int = 0, limit: int = 1000) -> list[LogLine]:
        """A flow run's log lines in order."""

    @abc.abstractmethod
    async def get_deployment(self, name: str) -> DeploymentView | None:
        """A deployment by its ``flow/deployment`` name, or None."""

    @abc.abstractmethod
    async def list_deployments(self) -> list[DeploymentView]:
        """Every deployment, by name."""

    @abc.abstractmethod
    async def get_document(self, kind: str, name: str) -> DocumentView | None:
        """A document (variable, block, ...) by kind and name, or None."""

    @abc.abstractmethod
    async def list_documents(self, kind: str) -> list[DocumentView]:
        """Every document of a kind, by name."""

    @abc.abstractmethod
    async def list_audit(
        self,
        actor: str | None = None,
        since: str | None = None,
        limit: int = 100,
        subject: str | None = None,
    ) -> list[AuditView]:
        """The audit trail, newest first: events someone caused, by ``actor``, since a time
        (ISO 8601), on ``subject`` (a run id, a queue, a document's name)."""

    @abc.abstractmethod
    async def prune(self, run_ids: Sequence[str]) -> int:
        """Remove these finished runs whole, in one transaction: their events, their rows in
        every projection (runs, task runs, logs, audit, the dashboard's counts). Returns how
        many runs were removed (one not there is not counted). Choosing which runs may go is
        the caller's (``engine/retention.py``): this removes what it is given."""

    @abc.abstractmethod
    async def rebuild_projections(self) -> int:
        """Re-derive every projection from the log; return the number of events replayed."""

    @abc.abstractmethod
    async def verify_projections(self) -> list[str]:
        """Compare a fresh rebuild with the live projections; return the differences found."""
