"""The PostgreSQL store's projections: applying events to them, and replaying and comparing
them from the event log (``EventStore.rebuild_projections`` and ``verify_projections`` say what
each promises)."""

from __future__ import annotations

from typing import Any

from flowbus.engine.records import EventRecord
from flowbus.engine.store import sql_statements as q
from flowbus.engine.store.projection import ProjectionPlan, plan

#: Events read from the log at a time while the projections are replayed.
REPLAY_CHUNK = 5_000


async def apply_plan(conn: Any, ops: ProjectionPlan, schema: str) -> None:
    """Apply ``ops`` to the projections in ``schema`` (the store's, or ``pg_temp``)."""
    for sql, params in q.projection_statements(ops, schema, numbered=True):
        await conn.execute(sql, *params)


async def replay_into(conn: Any, schema: str) -> int:
    """Apply the whole event log to the (empty) projections in ``schema``; how many events."""
    count, position = 0, 0
    while True:
        rows = await conn.fetch(
            "SELECT position, body FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            position,
            REPLAY_CHUNK,
        )
        if not rows:
            return count
        records = [EventRecord.from_body(row["body"], row["position"]) for row in rows]
        await apply_plan(conn, plan(records), schema)
        count += len(records)
        position = rows[-1]["position"]


async def differences(conn: Any, schema: str) -> list[str]:
    """How the projections in ``schema`` differ from a replay of the log (call in a
    repeatable-read transaction: the replay and the comparison see one snapshot)."""
    found: list[str] = []
    for table in q.PROJECTION_TABLES:
        await conn.execute(
            f"CREATE TEMP TABLE {table} (LIKE {schema}.{table} INCLUDING ALL) ON COMMIT DROP"
        )
    await replay_into(conn, "pg_temp")
    for table in q.PROJECTION_TABLES:
        for left, right, label in (
            (schema, "pg_temp", "live row missing from the rebuild"),
            ("pg_temp", schema, "rebuilt row missing from the live projection"),
        ):
            rows = await conn.fetch(
                f"SELECT * FROM {left}.{table} EXCEPT SELECT * FROM {right}.{table} LIMIT 20"
            )
            found += [f"{table}: {label}: {tuple(row)}" for row in rows]
    return found


__all__ = ["REPLAY_CHUNK", "apply_plan", "differences", "replay_into"]
