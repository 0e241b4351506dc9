"""The PostgreSQL event store (asyncpg): the backend for many machines and many runs.

The same log, projections and contract as the SQLite store. Appends hold a transaction-scoped
advisory lock, so even with several writer processes positions commit in order and a reader
following positions never skips one. Tables live in one PostgreSQL schema (``flowbus`` unless
the URL says ``?schema=...``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import orjson

from flowbus.engine.errors import StoreError
from flowbus.engine.records import EventRecord
from flowbus.engine.store import sql_statements as q
from flowbus.engine.store.base import EventStore
from flowbus.engine.store.migrations import load_migrations, split_statements
from flowbus.engine.store.postgres_projections import apply_plan, differences, replay_into
from flowbus.engine.store.projection import (
    AUDIT_COLUMNS,
    DEPLOYMENT_COLUMNS,
    FLOW_RUN_COLUMNS,
    LOG_COLUMNS,
    TASK_RUN_COLUMNS,
    plan,
)
from flowbus.engine.store.sequences import HeadsCache, check_sequences
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

#: The last sequence number of each of the streams given (streams with no events are absent).
_HEADS = (
    "SELECT stream_id, max(seq) FROM events WHERE stream_id = ANY($1::text[]) GROUP BY stream_id"
)
_WRITER_LOCK = 0x666C6F77  # "flow": the advisory lock every appending transaction takes
_FLOW_COLS = ", ".join(FLOW_RUN_COLUMNS)
_TASK_COLS = ", ".join(TASK_RUN_COLUMNS)
_LOG_COLS = ", ".join(LOG_COLUMNS)
_EVENT_COLS = "position, id, stream_id, seq, type, occurred, body"


def split_url(url: str) -> tuple[str, str]:
    """The connection URL without flowbus's own ``schema`` option, and that schema."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    schema = query.pop("schema", ["flowbus"])[0]
    if not schema.isidentifier():
        raise StoreError(f"schema {schema!r} in the store URL is not a plain identifier")
    return urlunsplit(parts._replace(query=urlencode(query, doseq=True))), schema


def safe_url(url: str) -> str:
    """The store's address for messages: host, port and database, never a password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"postgresql://{host}:{parts.port or 5432}{parts.path}"


class PostgresEventStore(EventStore):
    """Event store in a PostgreSQL database: ``postgresql://user:pass@host:5432/db?schema=s``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._dsn, self.schema = split_url(url)
        self._pool: Any = None
        self._lock = asyncio.Lock()
        self._heads = HeadsCache()

    # -- connection -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        import asyncpg

        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=4,
                server_settings={"search_path": self.schema},
            )
            await self._migrate()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self.close()
            raise self._failure(exc, "cannot use") from exc
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _failure(self, exc: BaseException, doing: str = "failed using") -> StoreError:
        return StoreError(f"{doing} the PostgreSQL store at {safe_url(self.url)}: {exc}")

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    async def _migrate(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            # One migrating process at a time; the others find the work done.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _WRITER_LOCK + 1)
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            for migration in load_migrations(folder="sql/postgres"):
                if migration.version in done:
                    continue
                for statement in split_statements(migration.sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )

    # -- appending ----------------------------------------------------------------------------

    async def append(self, records: Sequence[EventRecord]) -> int:
        if not records:
            return 0
        import asyncpg

        async with self._lock:
            try:
                return await self._append_once(records, assume_new=True)
            except asyncpg.UniqueViolationError:
                # Another process appended to one of these runs (our cached heads are stale),
                # or a stream taken as new was not: ask the database this time.
                self._heads.clear()
                try:
                    return await self._append_once(records, assume_new=False)
                except asyncpg.UniqueViolationError as exc:
                    raise StoreError(f"conflicting events: {exc}") from exc
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise self._failure(exc) from exc

    async def _append_once(self, records: Sequence[EventRecord], assume_new: bool) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _WRITER_LOCK)
            fresh, heads = await check_sequences(
                records,
                self._heads,
                lambda streams: self._load_heads(conn, streams),
                lambda stream, seq: conn.fetchval(
                    "SELECT id FROM events WHERE stream_id = $1 AND seq = $2", stream, seq
                ),
                assume_new,
            )
            if not fresh:
                return 0
            rows = q.event_rows(fresh)
            for sql, params in q.bulk_insert("events", q.EVENT_COLUMNS, rows, numbered=True):
                await conn.execute(sql, *params)
            await apply_plan(conn, plan(fresh), self.schema)
            await conn.execute(q.TRACK_POSITION)
        self._heads.remember(heads)
        return len(fresh)

    @staticmethod
    async def _load_heads(conn: Any, stream_ids: list[str]) -> dict[str, int]:
        rows = await conn.fetch(_HEADS, stream_ids)
        return {row[0]: int(row[1]) for row in rows}

    # -- reading ------------------------------------------------------------------------------

    async def _fetch(self, sql: str, *params: Any) -> list[Any]:
        import asyncpg

        try:
            async with self.pool.acquire() as conn:
                return list(await conn.fetch(sql, *params))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self._failure(exc) from exc

    async def head(self, stream_id: str) -> int:
        rows = await self._fetch("SELECT max(seq) FROM events WHERE stream_id = $1", stream_id)
        return int(rows[0][0] or 0)

    async def heads(self, stream_ids: Sequence[str]) -> dict[str, int]:
        found = {stream_id: 0 for stream_id in stream_ids}
        rows = await self._fetch(_HEADS, list(found))
        found.update({row[0]: int(row[1]) for row in rows})
        return found

    @staticmethod
    def _stored(row: Any) -> StoredEvent:
        return StoredEvent(
            position=row["position"],
            id=row["id"],
            stream_id=row["stream_id"],
            seq=row["seq"],
            type=row["type"],
            occurred=row["occurred"],
            data=orjson.loads(row["body"]),
        )

    async def read_stream(self, stream_id: str, after_seq: int = 0) -> list[StoredEvent]:
        rows = await self._fetch(
            f"SELECT {_EVENT_COLS} FROM events WHERE stream_id = $1 AND seq > $2 ORDER BY seq",
            stream_id,
            after_seq,
        )
        return [self._stored(row) for row in rows]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        rows = await self._fetch(
            f"SELECT {_EVENT_COLS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            after_position,
            limit,
        )
        return [self._stored(row) for row in rows]

    @staticmethod
    def _flow_run(row: Any) -> FlowRunView:
        return flow_run_view(row)

    async def get_flow_run(self, run_id: str) -> FlowRunView | None:
        rows = await self._fetch(f"SELECT {_FLOW_COLS} FROM flow_runs WHERE id = $1", run_id)
        return self._flow_run(rows[0]) if rows else None

    async def find_flow_runs(self, prefix: str, limit: int = 2) -> list[FlowRunView]:
        rows = await self._fetch(
            f"SELECT {_FLOW_COLS} FROM flow_runs WHERE starts_with(id, $1) ORDER BY id LIMIT $2",
            prefix,
            limit,
        )
        return [self._flow_run(row) for row in rows]

    async def find_runs(self, runs: RunFilter, limit: int = 50) -> list[FlowRunView]:
        sql, params = q.flow_run_listing(runs, limit, numbered=True)
        return [self._flow_run(row) for row in await self._fetch(sql, *params)]

    async def count_runs_by_hour(self, created_after: str) -> list[RunCount]:
        sql, params = q.run_counts_by_hour(created_after, numbered=True)
        return [RunCount(str(h), str(t), int(n)) for h, t, n in await self._fetch(sql, *params)]

    async def list_task_runs(self, run_id: str) -> list[TaskRunView]:
        rows = await self._fetch(
            f"SELECT {_TASK_COLS} FROM task_runs WHERE flow_run_id = $1 ORDER BY created, id",
            run_id,
        )
        views = [task_run_view(row) for row in rows]
        return views

    async def get_logs(self, run_id: str, after_seq: int = 0, limit: int = 1000) -> list[LogLine]:
        rows = await self._fetch(
            f"SELECT {_LOG_COLS} FROM logs WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            run_id,
            after_seq,
            limit,
        )
        return [LogLine(**dict(row)) for row in rows]

    async def list_audit(
        self,
        actor: str | None = None,
        since: str | None = None,
        limit: int = 100,
        subject: str | None = None,
    ) -> list[AuditView]:
        params: list[Any] = [since or ""]
        where = "occurred >= $1"
        for column, value in (("actor", actor), ("subject", subject)):
            if value is not None:
                params.append(value)
                where += f" AND {column} = ${len(params)}"
        params.append(limit)
        rows = await self._fetch(
            f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit WHERE {where} "
            f"ORDER BY occurred DESC, event_id DESC LIMIT ${len(params)}",
            *params,
        )
        return [AuditView(*tuple(row)) for row in rows]

    async def get_deployment(self, name: str) -> DeploymentView | None:
        rows = await self._fetch(
            f"SELECT {', '.join(DEPLOYMENT_COLUMNS)} FROM deployments WHERE name = $1", name
        )
        return deployment_view(tuple(rows[0])) if rows else None

    async def list_deployments(self) -> list[DeploymentView]:
        rows = await self._fetch(
            f"SELECT {', '.join(DEPLOYMENT_COLUMNS)} FROM deployments ORDER BY name"
        )
        return [deployment_view(tuple(row)) for row in rows]

    # -- rebuilding and verifying -----------------------------------------------------------

    async def get_document(self, kind: str, name: str) -> DocumentView | None:
        rows = await self._fetch(
            f"{q.DOCUMENT_SELECT} WHERE kind = $1 AND name = $2",
            kind,
            name,
        )
        return document_view(tuple(rows[0])) if rows else None

    async def list_documents(self, kind: str) -> list[DocumentView]:
        rows = await self._fetch(
            f"{q.DOCUMENT_SELECT} WHERE kind = $1 ORDER BY name",
            kind,
        )
        return [document_view(tuple(row)) for row in rows]

    async def prune(self, run_ids: Sequence[str]) -> int:
        if not run_ids:
            return 0
        ids = list(run_ids)
        async with self.pool.acquire() as conn, conn.transaction():
            # One writer at a time, as appends take it: an append between the reads and the
            # deletes below cannot change the counts they move.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _WRITER_LOCK)
            await conn.execute(
                "UPDATE run_counts SET runs = run_counts.runs - gone.runs FROM ("
                " SELECT substr(created, 1, 13) AS hour, state_type, count(*) AS runs"
                " FROM flow_runs WHERE id = ANY($1::text[]) GROUP BY 1, 2) AS gone"
                " WHERE run_counts.hour = gone.hour AND run_counts.state_type = gone.state_type",
                ids,
            )
            for sql in q.PRUNE_STATEMENTS:
                await conn.execute(sql.format(marks="SELECT unnest($1::text[])"), ids)
            deleted = await conn.execute("DELETE FROM flow_runs WHERE id = ANY($1::text[])", ids)
            await conn.execute("DELETE FROM run_counts WHERE runs <= 0")
        self._heads.clear()
        return int(deleted.split()[-1])

    async def rebuild_projections(self) -> int:
        async with self._lock, self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _WRITER_LOCK)
            for table in q.PROJECTION_TABLES:
                await conn.execute(f"DELETE FROM {self.schema}.{table}")
            count = await replay_into(conn, self.schema)
            await conn.execute(
                "UPDATE projection_tracking SET position = "
                "(SELECT coalesce(max(position), 0) FROM events) WHERE name = 'runs'"
            )
            return count

    async def verify_projections(self) -> list[str]:
        # One snapshot for the replay and the comparison (read committed takes one per
        # statement: a run an orchestrator wrote between them showed as a difference).
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            return await differences(conn, self.schema)
