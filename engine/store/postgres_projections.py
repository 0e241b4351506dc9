"""The PostgreSQL store's projections: applying events to them, and replaying and comparing
them from the event log (``EventStore.rebuild_projections`` and ``verify_projections`` say what
each promises)."""

from __future__ import annotations

from typing import Any

from flowbus.engine.records import EventRecord
from flowbus.engine.store import sql_statements as q
from flowbus.engine.store.projection import (
    AUDIT_COLUMNS,
    FLOW_RUN_COLUMNS,
    LOG_COLUMNS,
    TASK_RUN_COLUMNS,
    ProjectionPlan,
    plan,
)

#: Events read from the log at a time while the projections are replayed.
REPLAY_CHUNK = 5_000


async def apply_plan(conn: Any, ops: ProjectionPlan, schema: str) -> None:
    """Apply ``ops`` to the projections in ``schema`` (the store's, or ``pg_temp``)."""
    flow_updates = list(q.bulk_state_update(f"{schema}.flow_runs", ops.flow_updates, True))
    updated = [update[-1] for update in ops.flow_updates]
    statements = [
        *q.bulk_insert(f"{schema}.flow_runs", FLOW_RUN_COLUMNS, ops.flow_inserts, True),
        *q.bulk_insert(f"{schema}.task_runs", TASK_RUN_COLUMNS, ops.task_inserts, True),
        *q.run_count_changes(schema, ops.flow_inserts, updated, flow_updates, True),
        *q.bulk_state_update(f"{schema}.task_runs", ops.task_updates, True),
        *q.bulk_insert(f"{schema}.logs", LOG_COLUMNS, ops.logs, True),
        *q.deployment_upserts(f"{schema}.deployments", ops.deployments, True),
        *q.document_changes(f"{schema}.documents", ops.document_deletes, ops.documents, True),
        *q.bulk_insert(f"{schema}.audit", AUDIT_COLUMNS, ops.audit, True),
    ]
    for sql, params in statements:
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
