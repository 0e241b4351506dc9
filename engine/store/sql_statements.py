"""The SQL that applies a projection plan; ``{s}`` is the schema (``main`` or a scratch copy).

Rows go to SQLite as multi-row ``VALUES`` statements, each holding as many rows as the bound-
variable limit allows. One statement for many rows matters more than it seems: ``executemany``
releases and retakes the GIL around each row, and with engine threads running Python meanwhile
each retake can wait a whole switch interval. Measured here, per event row: ``executemany`` 7 µs
alone and 1.2 ms next to a busy thread; one ``json_each`` statement 9 and 22 µs; multi-row
``VALUES`` 4.4 and 17 µs.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any

from flowbus.engine.records import EventRecord
from flowbus.engine.states import StateType
from flowbus.engine.store.projection import (
    AUDIT_COLUMNS,
    DEPLOYMENT_COLUMNS,
    DOCUMENT_COLUMNS,
    FLOW_RUN_COLUMNS,
    LOG_COLUMNS,
    STATE_UPDATE_FIELDS,
    TASK_RUN_COLUMNS,
    ProjectionPlan,
)
from flowbus.engine.store.views import RunFilter

STATE_TYPES = frozenset(t.value for t in StateType)
EVENT_COLUMNS = ("id", "stream_id", "seq", "type", "occurred", "body")


def event_rows(records: Sequence[EventRecord]) -> list[tuple[Any, ...]]:
    """The ``events`` rows of records (their timestamps are canonical already)."""
    return [(r.id, r.stream_id, r.seq, r.type, r.occurred, r.body().decode()) for r in records]


PROJECTION_TABLES = (
    "flow_runs", "task_runs", "logs", "deployments", "documents", "run_counts", "audit"
)  # fmt: skip
#: What ``prune`` deletes beside a run's row, for runs ``IN ({marks})`` (the run's row last:
#: the counts are read from it first).
PRUNE_STATEMENTS = (
    "DELETE FROM task_runs WHERE flow_run_id IN ({marks})",
    "DELETE FROM logs WHERE run_id IN ({marks})",
    "DELETE FROM audit WHERE stream_id IN ({marks})",
    "DELETE FROM events WHERE stream_id IN ({marks})",
)
INSERT_COLUMNS = {"flow_runs": FLOW_RUN_COLUMNS, "task_runs": TASK_RUN_COLUMNS, "logs": LOG_COLUMNS}


@cache
def _sqlite_variable_limit() -> int:
    with sqlite3.connect(":memory:") as db:
        return db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


POSTGRES_VARIABLE_LIMIT = 32767  # the wire protocol counts parameters in 16 bits

CHUNK_ROWS = 256  # rows per statement: one prepared statement, reused from the driver's cache


@cache
def _values(width: int, rows: int, numbered: bool, casts: tuple[str, ...] | None) -> str:
    """``(?,?),(?,?)`` for SQLite; ``($1,$2),($3,$4)`` for PostgreSQL, with optional casts."""
    groups = []
    for row in range(rows):
        if numbered:
            marks = [f"${row * width + i + 1}" for i in range(width)]
            if casts:
                marks = [f"{mark}::{cast}" for mark, cast in zip(marks, casts, strict=True)]
        else:
            marks = ["?"] * width
        groups.append("(" + ",".join(marks) + ")")
    return ",".join(groups)


def _chunks(
    rows: Sequence[Sequence[Any]], width: int, numbered: bool
) -> Iterator[tuple[int, list[Any]]]:
    limit = POSTGRES_VARIABLE_LIMIT if numbered else _sqlite_variable_limit()
    size = max(1, min(CHUNK_ROWS, limit // width))
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        flat: list[Any] = []
        for row in chunk:
            flat.extend(row)
        yield len(chunk), flat


def bulk_insert(
    table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], numbered: bool = False
) -> Iterator[tuple[str, list[Any]]]:
    """(sql, parameters) statements inserting ``rows`` into ``table`` (schema-qualified)."""
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    for count, flat in _chunks(rows, len(columns), numbered):
        yield head + _values(len(columns), count, numbered, None), flat


def bulk_upsert(
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    keep: Sequence[str] = (),
    numbered: bool = False,
) -> Iterator[tuple[str, list[Any]]]:
    """Insert ``rows``, or overwrite the existing row with the same id but its ``keep`` columns.

    ``ON CONFLICT ... DO UPDATE`` is the same in SQLite and PostgreSQL. Callers pass at most one
    row per id (PostgreSQL refuses to update a row twice in one statement)."""
    assignments = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id" and c not in keep)
    for sql, params in bulk_insert(table, columns, rows, numbered):
        yield f"{sql} ON CONFLICT (id) DO UPDATE SET {assignments}", params


#: PostgreSQL types of a state update's fields (its VALUES rows carry no column types).
STATE_UPDATE_CASTS = ("text", "text", "text", "text", "text", "text", "int", "text", "text")


def bulk_state_update(
    table: str, updates: Sequence[Sequence[Any]], numbered: bool = False
) -> Iterator[tuple[str, list[Any]]]:
    """(sql, parameters) statements applying merged state updates (one per row, see
    ``projection.merge_updates``). started keeps the first Running time; ended is set by a
    terminal state and cleared by a non-terminal one (a crashed run queued again is not ended)."""
    names = ", ".join(STATE_UPDATE_FIELDS)
    head = (
        f"UPDATE {table} AS t SET state_type = u.state_type, state_name = u.state_name, "
        "state_message = u.state_message, state_timestamp = u.state_timestamp, "
        "started = COALESCE(t.started, u.started), ended = u.ended, "
        "run_count = t.run_count + u.run_inc, result = COALESCE(u.result, t.result) FROM "
    )
    width = len(STATE_UPDATE_FIELDS)
    casts = STATE_UPDATE_CASTS if numbered else None
    for count, flat in _chunks(updates, width, numbered):
        values = _values(width, count, numbered, casts)
        if numbered:
            source = f"(VALUES {values}) AS u({names})"
        else:  # SQLite names VALUES columns column1, column2, ...
            picked = ", ".join(f"column{i + 1} AS {n}" for i, n in enumerate(STATE_UPDATE_FIELDS))
            source = f"(SELECT {picked} FROM (VALUES {values})) AS u"
        yield head + source + " WHERE t.id = u.id", flat


def deployment_upserts(
    table: str, rows: Sequence[Sequence[Any]], numbered: bool = False
) -> Iterator[tuple[str, list[Any]]]:
    """Deployment rows: a redefinition replaces everything but when it was first created."""
    return bulk_upsert(table, DEPLOYMENT_COLUMNS, rows, keep=("created",), numbered=numbered)


#: Run after every append, in its transaction: how far the projections have applied the log.
TRACK_POSITION = (
    "UPDATE projection_tracking SET position = (SELECT max(position) FROM events) "
    "WHERE name = 'runs'"
)


def flow_run_listing(runs: RunFilter, limit: int, numbered: bool = False) -> tuple[str, list[Any]]:
    """The query for ``EventStore.list_flow_runs``: newest first, filters optional."""
    where: list[str] = []
    params: list[Any] = []

    def mark(value: Any) -> str:
        params.append(value)
        return f"${len(params)}" if numbered else "?"

    if runs.state is not None:
        # A type (FAILED) or a name (Late) never look alike: one indexed column either way.
        column = "state_type" if runs.state in STATE_TYPES else "state_name"
        where.append(f"{column} = {mark(runs.state)}")
    if runs.flow_name is not None:
        where.append(f"flow_name = {mark(runs.flow_name)}")
    if runs.deployment is not None:
        where.append(f"deployment = {mark(runs.deployment)}")
    if runs.tag is not None:  # tags are a JSON list of strings: match the quoted tag
        where.append(f"tags LIKE {mark('%' + json.dumps(runs.tag) + '%')}")
    if runs.parent_run_id is not None:
        where.append(f"parent_run_id = {mark(runs.parent_run_id)}")
    if runs.created_after is not None:
        where.append(f"created >= {mark(runs.created_after)}")
    if runs.created_before is not None:
        where.append(f"created < {mark(runs.created_before)}")
    if runs.cursor is not None:
        created, run_id = runs.cursor
        where.append(
            f"(created < {mark(created)} OR (created = {mark(created)} AND id < {mark(run_id)}))"
        )
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    columns = ", ".join(FLOW_RUN_COLUMNS)
    order = f"ORDER BY created DESC, id DESC LIMIT {mark(limit)}"
    return f"SELECT {columns} FROM flow_runs {clause}{order}", params


def run_counts_by_hour(created_after: str, numbered: bool = False) -> tuple[str, list[Any]]:
    """The query for ``EventStore.count_runs_by_hour``: the ``run_counts`` projection, one row
    per hour and state type, so its cost does not depend on how many runs there are. An hour is
    the first 13 characters of a canonical UTC timestamp; the window starts at an hour's start
    (the dashboard's), or at the hour ``created_after`` falls in."""
    mark = "$1" if numbered else "?"
    return (
        f"SELECT hour, state_type, runs FROM run_counts WHERE hour >= {mark} AND runs != 0 "
        "ORDER BY hour, state_type",
        [created_after[:13]],
    )


_COUNT_UPSERT = "ON CONFLICT (hour, state_type) DO UPDATE SET runs = c.runs + excluded.runs"


def run_count_changes(
    schema: str,
    inserted: Sequence[Sequence[Any]],
    updated_ids: Sequence[str],
    apply_updates: Sequence[tuple[str, list[Any]]],
    numbered: bool = False,
) -> Iterator[tuple[str, list[Any]]]:
    """The ``run_counts`` projection kept with the flow runs: new runs count in their creation
    hour and state type; a state update moves a run from its old type to its new one (counted
    out before ``apply_updates``, which are the updates themselves, and in again after)."""
    hour_at, state_at = FLOW_RUN_COLUMNS.index("created"), FLOW_RUN_COLUMNS.index("state_type")
    added: dict[tuple[str, str], int] = {}
    for row in inserted:
        key = (row[hour_at][:13], row[state_at])
        added[key] = added.get(key, 0) + 1
    rows = [(hour, state, n) for (hour, state), n in added.items()]
    for sql, params in bulk_insert(f"{schema}.run_counts AS c", ("hour", "state_type", "runs"),
                                   rows, numbered):  # fmt: skip
        yield f"{sql} {_COUNT_UPSERT}", params
    if not updated_ids:
        yield from apply_updates
        return
    yield from _count_moves(schema, updated_ids, "-", numbered)
    yield from apply_updates
    yield from _count_moves(schema, updated_ids, "", numbered)
    yield f"DELETE FROM {schema}.run_counts WHERE runs = 0", []


def _count_moves(
    schema: str, ids: Sequence[str], sign: str, numbered: bool
) -> Iterator[tuple[str, list[Any]]]:
    size = 500
    for start in range(0, len(ids), size):
        chunk = list(ids[start : start + size])
        params: list[Any]
        if numbered:
            where, params = "id = ANY($1::text[])", [chunk]
        else:
            where, params = f"id IN ({','.join('?' * len(chunk))})", chunk
        yield (
            f"INSERT INTO {schema}.run_counts AS c (hour, state_type, runs) "
            f"SELECT substr(created, 1, 13), state_type, {sign}count(*) FROM {schema}.flow_runs "
            f"WHERE {where} GROUP BY substr(created, 1, 13), state_type {_COUNT_UPSERT}",
            params,
        )


DOCUMENT_SELECT = f"SELECT {', '.join(DOCUMENT_COLUMNS)} FROM documents"


def document_changes(
    table: str,
    deletes: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Any]],
    numbered: bool = False,
) -> Iterator[tuple[str, list[Any]]]:
    """Deletes, then upserts that keep the first ``created`` (documents are few and small)."""
    for kind, name in deletes:
        marks = ("$1", "$2") if numbered else ("?", "?")
        yield f"DELETE FROM {table} WHERE kind = {marks[0]} AND name = {marks[1]}", [kind, name]
    for sql, params in bulk_insert(table, DOCUMENT_COLUMNS, rows, numbered):
        yield (
            f"{sql} ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body, "
            "updated = excluded.updated, version = excluded.version",
            params,
        )


def projection_statements(
    ops: ProjectionPlan, schema: str, numbered: bool = False
) -> list[tuple[str, Any]]:
    """The statements applying ``ops`` to the projections in ``schema`` (SQLite's "main" or
    "scratch"; PostgreSQL's schema or "pg_temp", ``numbered``)."""
    flow_updates = list(bulk_state_update(f"{schema}.flow_runs", ops.flow_updates, numbered))
    updated = [update[-1] for update in ops.flow_updates]
    return [
        *bulk_insert(f"{schema}.flow_runs", FLOW_RUN_COLUMNS, ops.flow_inserts, numbered),
        *bulk_insert(f"{schema}.task_runs", TASK_RUN_COLUMNS, ops.task_inserts, numbered),
        *run_count_changes(schema, ops.flow_inserts, updated, flow_updates, numbered),
        *bulk_state_update(f"{schema}.task_runs", ops.task_updates, numbered),
        *bulk_insert(f"{schema}.logs", LOG_COLUMNS, ops.logs, numbered),
        *deployment_upserts(f"{schema}.deployments", ops.deployments, numbered),
        *document_changes(f"{schema}.documents", ops.document_deletes, ops.documents, numbered),
        *bulk_insert(f"{schema}.audit", AUDIT_COLUMNS, ops.audit, numbered),
    ]
