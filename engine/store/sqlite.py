"""The SQLite event store (aiosqlite, WAL): the default backend, one file under $FLOWBUS_HOME.

One writer per store: appends are serialized by a lock and each batch is one transaction holding
the events, their projections and the tracking position. Readers in other processes see committed
data thanks to WAL.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from flowbus.engine.errors import StoreError
from flowbus.engine.records import EventRecord
from flowbus.engine.store import sql_statements as q
from flowbus.engine.store.base import EventStore
from flowbus.engine.store.migrations import load_migrations, split_statements
from flowbus.engine.store.projection import (
    AUDIT_COLUMNS,
    DEPLOYMENT_COLUMNS,
    FLOW_RUN_COLUMNS,
    LOG_COLUMNS,
    TASK_RUN_COLUMNS,
    plan,
)
from flowbus.engine.store.sequences import HeadsCache, check_sequences
from flowbus.engine.store.sqlite_projections import rebuild, verify
from flowbus.engine.store.sqlite_prune import prune_runs
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


def _transact(connection: sqlite3.Connection, statements: list[tuple[str, Any]]) -> None:
    """Run ``statements`` as one transaction (on the connection's thread)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            connection.execute(sql, params)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:  # a COMMIT refused (a full disk) leaves it open too
            connection.execute("ROLLBACK")
        raise


def _store_error(path: str, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the store {path} is locked by another process and stayed locked: {text}"
        )
    if "full" in text:
        return StoreError(f"the disk holding the store {path} is full: {text}")
    return StoreError(f"the store {path} failed: {text}")


class SqliteEventStore(EventStore):
    """Event store in one SQLite file.

    Args:
        path: the database file (created with its folder if missing).
        synchronous: SQLite's ``synchronous`` pragma; ``FULL`` fsyncs every commit so an event
            is on disk when ``append`` returns, ``NORMAL`` survives crashes but not power loss.
        busy_timeout: seconds to wait for a lock held by another process before failing.
    """

    def __init__(self, path: str | Path, synchronous: str = "FULL", busy_timeout: float = 5.0):
        self.path = str(path)
        self.url = f"sqlite:///{self.path}"
        self._synchronous = synchronous
        self._busy_ms = int(busy_timeout * 1000)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._heads = HeadsCache()

    # -- connection -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._db is not None:
            return
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the folder of the store {self.path}: {exc}"
                ) from exc
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            # Takes effect in a new store only (before its first table): a prune's freed pages
            # then go back to the file system (``PRAGMA incremental_vacuum``).
            await self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            await self._db.execute("PRAGMA journal_mode = WAL")
            await self._db.execute(f"PRAGMA synchronous = {self._synchronous}")
            await self._migrate()
        except sqlite3.Error as exc:
            await self.close()
            raise _store_error(self.path, exc) from exc
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    async def _migrate(self) -> None:
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)"
        )
        rows = await self.db.execute_fetchall("SELECT version FROM schema_migrations")
        done = {row[0] for row in rows}
        for migration in load_migrations():
            if migration.version in done:
                continue
            async with self._transaction():
                for statement in split_statements(migration.sql):
                    await self.db.execute(statement)
                await self.db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, datetime('now'))",
                    (migration.version, migration.name),
                )

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        await self.db.execute("COMMIT")

    # -- appending ----------------------------------------------------------------------------

    async def append(self, records: Sequence[EventRecord]) -> int:
        if not records:
            return 0
        async with self._lock:
            try:
                return await self._append_once(records, assume_new=True)
            except sqlite3.IntegrityError:
                # Another process appended to one of these runs (our cached heads are stale),
                # or a stream taken as new was not: ask the database this time.
                self._heads.clear()
                try:
                    return await self._append_once(records, assume_new=False)
                except sqlite3.IntegrityError as exc:
                    raise StoreError(f"conflicting events: {exc}") from exc
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from exc

    async def _append_once(self, records: Sequence[EventRecord], assume_new: bool) -> int:
        fresh, heads = await check_sequences(
            records, self._heads, self.heads, self._event_id_at, assume_new
        )
        if not fresh:
            return 0
        statements = [
            *q.bulk_insert("events", q.EVENT_COLUMNS, q.event_rows(fresh)),
            *q.projection_statements(plan(fresh), "main"),
            (q.TRACK_POSITION, ()),
        ]
        await self._in_thread(_transact, statements)
        self._heads.remember(heads)
        return len(fresh)

    async def _in_thread(self, work: Callable[..., Any], *args: Any) -> Any:
        """``work(connection, *args)`` in one hop to the connection's thread. A transaction
        statement by statement costs a hop (a thread switch each way) per statement; the
        recorder's commit is on the path of every run's end, so it is made in one."""
        db = self.db
        # aiosqlite runs the functions it is given on its connection's own thread, in order
        # with everything else asked of it; there is no public way to give it one.
        return await db._execute(lambda: work(db._conn, *args))

    async def _event_id_at(self, stream_id: str, seq: int) -> str | None:
        rows = list(
            await self.db.execute_fetchall(
                "SELECT id FROM events WHERE stream_id = ? AND seq = ?", (stream_id, seq)
            )
        )
        return str(rows[0][0]) if rows else None

    # -- reading ------------------------------------------------------------------------------

    async def head(self, stream_id: str) -> int:
        return (await self.heads([stream_id]))[stream_id]

    async def heads(self, stream_ids: Sequence[str]) -> dict[str, int]:
        found = {stream_id: 0 for stream_id in stream_ids}
        wanted = list(found)
        for start in range(0, len(wanted), 500):  # SQLite's bound parameters are limited
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT stream_id, max(seq) FROM events WHERE stream_id IN ({marks}) GROUP BY 1"
            found.update({row[0]: int(row[1]) for row in await self._fetch(sql, chunk)})
        return found

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return list(await self.db.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from exc

    @staticmethod
    def _stored(row: Sequence[Any]) -> StoredEvent:
        position, event_id, stream_id, seq, type_, occurred, body = row
        return StoredEvent(
            position=position,
            id=event_id,
            stream_id=stream_id,
            seq=seq,
            type=type_,
            occurred=occurred,
            data=orjson.loads(body),
        )

    async def read_stream(self, stream_id: str, after_seq: int = 0) -> list[StoredEvent]:
        rows = await self._fetch(
            "SELECT position, id, stream_id, seq, type, occurred, body FROM events "
            "WHERE stream_id = ? AND seq > ? ORDER BY seq",
            (stream_id, after_seq),
        )
        return [self._stored(row) for row in rows]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        rows = await self._fetch(
            "SELECT position, id, stream_id, seq, type, occurred, body FROM events "
            "WHERE position > ? ORDER BY position LIMIT ?",
            (after_position, limit),
        )
        return [self._stored(row) for row in rows]

    @staticmethod
    def _flow_run(row: Sequence[Any]) -> FlowRunView:
        return flow_run_view(dict(zip(FLOW_RUN_COLUMNS, row, strict=True)))

    async def get_flow_run(self, run_id: str) -> FlowRunView | None:
        rows = await self._fetch(
            f"SELECT {', '.join(FLOW_RUN_COLUMNS)} FROM flow_runs WHERE id = ?", (run_id,)
        )
        return self._flow_run(rows[0]) if rows else None

    async def find_flow_runs(self, prefix: str, limit: int = 2) -> list[FlowRunView]:
        rows = await self._fetch(
            f"SELECT {', '.join(FLOW_RUN_COLUMNS)} FROM flow_runs "
            "WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (prefix, prefix + "\uffff", limit),
        )
        return [self._flow_run(row) for row in rows]

    async def find_runs(self, runs: RunFilter, limit: int = 50) -> list[FlowRunView]:
        sql, params = q.flow_run_listing(runs, limit)
        return [self._flow_run(row) for row in await self._fetch(sql, params)]

    async def count_runs_by_hour(self, created_after: str) -> list[RunCount]:
        sql, params = q.run_counts_by_hour(created_after)
        return [RunCount(str(h), str(t), int(n)) for h, t, n in await self._fetch(sql, params)]

    async def list_task_runs(self, run_id: str) -> list[TaskRunView]:
        rows = await self._fetch(
            f"SELECT {', '.join(TASK_RUN_COLUMNS)} FROM task_runs "
            "WHERE flow_run_id = ? ORDER BY created, id",
            (run_id,),
        )
        views = [task_run_view(dict(zip(TASK_RUN_COLUMNS, row, strict=True))) for row in rows]
        return views

    async def get_logs(self, run_id: str, after_seq: int = 0, limit: int = 1000) -> list[LogLine]:
        rows = await self._fetch(
            f"SELECT {', '.join(LOG_COLUMNS)} FROM logs WHERE run_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (run_id, after_seq, limit),
        )
        return [LogLine(**dict(zip(LOG_COLUMNS, row, strict=True))) for row in rows]

    async def list_audit(
        self,
        actor: str | None = None,
        since: str | None = None,
        limit: int = 100,
        subject: str | None = None,
    ) -> list[AuditView]:
        where, params = ["occurred >= ?"], [since or ""]
        for column, value in (("actor", actor), ("subject", subject)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        rows = await self._fetch(
            f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit WHERE {' AND '.join(where)} "
            "ORDER BY occurred DESC, event_id DESC LIMIT ?",
            (*params, limit),
        )
        return [AuditView(*row) for row in rows]

    async def get_deployment(self, name: str) -> DeploymentView | None:
        rows = await self._fetch(
            f"SELECT {', '.join(DEPLOYMENT_COLUMNS)} FROM deployments WHERE name = ?", (name,)
        )
        return deployment_view(rows[0]) if rows else None

    async def list_deployments(self) -> list[DeploymentView]:
        rows = await self._fetch(
            f"SELECT {', '.join(DEPLOYMENT_COLUMNS)} FROM deployments ORDER BY name"
        )
        return [deployment_view(row) for row in rows]

    async def get_document(self, kind: str, name: str) -> DocumentView | None:
        rows = await self._fetch(
            f"{q.DOCUMENT_SELECT} WHERE kind = ? AND name = ?",
            (kind, name),
        )
        return document_view(rows[0]) if rows else None

    async def list_documents(self, kind: str) -> list[DocumentView]:
        rows = await self._fetch(
            f"{q.DOCUMENT_SELECT} WHERE kind = ? ORDER BY name",
            (kind,),
        )
        return [document_view(row) for row in rows]

    async def prune(self, run_ids: Sequence[str]) -> int:
        if not run_ids:
            return 0
        async with self._lock:
            try:
                gone = await self._in_thread(prune_runs, list(run_ids))
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from exc
            self._heads.clear()
            return int(gone)

    async def rebuild_projections(self) -> int:
        async with self._lock:
            try:
                async with self._transaction():
                    return await rebuild(self.db)
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from exc

    async def verify_projections(self) -> list[str]:
        async with self._lock:
            try:
                return await verify(self.db)
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from exc
