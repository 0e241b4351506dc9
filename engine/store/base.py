"""The event store's contract: an append-only log with per-run sequences, plus projections."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from flowbus.engine.errors import SequenceError
from flowbus.engine.records import EventRecord, make_record
from flowbus.engine.store.views import (
    DeploymentView,
    DocumentView,
    FlowRunView,
    LogLine,
    RunCount,
    RunFilter,
    StoredEvent,
    TaskRunView,
)


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
    async def rebuild_projections(self) -> int:
        """Re-derive every projection from the log; return the number of events replayed."""

    @abc.abstractmethod
    async def verify_projections(self) -> list[str]:
        """Compare a fresh rebuild with the live projections; return the differences found."""
