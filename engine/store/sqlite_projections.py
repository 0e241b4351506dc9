"""The SQLite store's projections: the statements that apply events to them, and rebuilding
and verifying them from the event log (``EventStore.rebuild_projections`` and
``verify_projections`` say what each promises)."""

from __future__ import annotations

import aiosqlite

from flowbus.engine.records import EventRecord
from flowbus.engine.store import sql_statements as q
from flowbus.engine.store.projection import plan
from flowbus.engine.store.sql_statements import projection_statements

#: Events read from the log at a time while the projections are replayed.
REPLAY_CHUNK = 5_000


async def replay_into(db: aiosqlite.Connection, schema: str) -> int:
    """Apply the whole event log to the (empty) projections in ``schema``; how many events."""
    count, position = 0, 0
    while True:
        rows = list(
            await db.execute_fetchall(
                "SELECT position, body FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (position, REPLAY_CHUNK),
            )
        )
        if not rows:
            return count
        records = [EventRecord.from_body(body, pos) for pos, body in rows]
        for sql, params in projection_statements(plan(records), schema):
            await db.execute(sql, params)
        count += len(records)
        position = rows[-1][0]


async def rebuild(db: aiosqlite.Connection) -> int:
    """Empty the projections and replay the log into them (in the caller's transaction)."""
    for table in q.PROJECTION_TABLES:
        await db.execute(f"DELETE FROM {table}")
    count = await replay_into(db, "main")
    await db.execute(
        "UPDATE projection_tracking SET position = "
        "(SELECT coalesce(max(position), 0) FROM events) WHERE name = 'runs'"
    )
    return count


async def verify(db: aiosqlite.Connection) -> list[str]:
    """Rebuild the projections in a scratch database and list how they differ from the live
    ones (at most 20 rows each way per table). The replay and the comparison read the log and
    the live projections in one transaction: one snapshot of them, whatever an orchestrator
    writes meanwhile (compared in a later one, a write between the two showed as a difference).
    """
    differences: list[str] = []
    await db.execute("ATTACH DATABASE ':memory:' AS scratch")
    try:
        for table in q.PROJECTION_TABLES:
            rows = list(
                await db.execute_fetchall(
                    "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?",
                    (table,),
                )
            )
            await db.execute(
                rows[0][0].replace(f"CREATE TABLE {table}", f"CREATE TABLE scratch.{table}")
            )
        await db.execute("BEGIN")
        try:
            await replay_into(db, "scratch")
            for table in q.PROJECTION_TABLES:
                for left, right, label in (
                    ("main", "scratch", "live row missing from the rebuild"),
                    ("scratch", "main", "rebuilt row missing from the live projection"),
                ):
                    rows = list(
                        await db.execute_fetchall(
                            f"SELECT * FROM {left}.{table} EXCEPT SELECT * FROM {right}.{table} "
                            "LIMIT 20"
                        )
                    )
                    differences += [f"{table}: {label}: {tuple(row)}" for row in rows]
        finally:
            await db.execute("ROLLBACK")  # the scratch copy goes with the snapshot
    finally:
        await db.execute("DETACH DATABASE scratch")
    return differences


__all__ = ["rebuild", "replay_into", "verify"]
