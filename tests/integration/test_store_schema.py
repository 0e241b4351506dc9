"""The tables' columns are written once (the read models' fields, ``engine/store/views.py``);
the SQL migrations of SQLite and of PostgreSQL must make exactly those tables."""

from __future__ import annotations

from pathlib import Path

from flowbus.engine.store import SqliteEventStore, projection
from flowbus.engine.store.postgres import PostgresEventStore
from tests.integration.postgres import fresh_schema

#: Every projection table written from a view, and its columns in order.
TABLES = {
    "flow_runs": projection.FLOW_RUN_COLUMNS,
    "task_runs": projection.TASK_RUN_COLUMNS,
    "deployments": projection.DEPLOYMENT_COLUMNS,
    "documents": projection.DOCUMENT_COLUMNS,
    "logs": projection.LOG_COLUMNS,
    "audit": projection.AUDIT_COLUMNS,
}
#: The other tables: the log, and what the projections keep of their own.
OTHERS = {
    "events": ("position", "id", "stream_id", "seq", "type", "occurred", "body"),
    "projection_tracking": ("name", "position"),
    "run_counts": ("hour", "state_type", "runs"),
}


async def test_sqlite_makes_the_tables_of_the_views(tmp_path: Path) -> None:
    async with SqliteEventStore(tmp_path / "store.db") as store:
        db = store._db
        assert db is not None
        names = {row[0] async for row in await db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name != 'schema_migrations'"
        )}  # fmt: skip
        assert names == set(TABLES) | set(OTHERS)
        for table, columns in {**TABLES, **OTHERS}.items():
            found = tuple([row[1] async for row in await db.execute(f"PRAGMA table_info({table})")])
            assert found == columns, table


async def test_postgresql_makes_the_tables_of_the_views() -> None:
    async with fresh_schema() as url:
        store = PostgresEventStore(url)
        await store.open()
        try:
            pool = store._pool
            assert pool is not None
            rows = await pool.fetch(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
                store.schema,
            )
        finally:
            await store.close()
    found: dict[str, tuple[str, ...]] = {}
    for row in rows:
        found[row["table_name"]] = (*found.get(row["table_name"], ()), row["column_name"])
    found.pop("schema_migrations", None)
    assert found == {**TABLES, **OTHERS}
