"""The SQL that applies a projection plan; ``{s}`` is the schema (``main`` or a scratch copy).

Rows go to SQLite as multi-row ``VALUES`` statements, each holding as many rows as the bound-
variable limit allows. One statement for many rows matters more than it seems: ``executemany``
releases and retakes the GIL around each row, and with engine threads running Python meanwhile
each retake can wait a whole switch interval. Measured here, per event row: ``executemany`` 7 µs
alone and 1.2 ms next to a busy thread; one ``json_each`` statement 9 and 22 µs; multi-row
``VALUES`` 4.4 and 17 µs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any

from flowbus.engine.store.projection import (
    FLOW_RUN_COLUMNS,
    LOG_COLUMNS,
    STATE_UPDATE_FIELDS,
    TASK_RUN_COLUMNS,
)

EVENT_COLUMNS = ("id", "run_id", "seq", "type", "occurred", "body")
PROJECTION_TABLES = ("flow_runs", "task_runs", "logs")
INSERT_COLUMNS = {"flow_runs": FLOW_RUN_COLUMNS, "task_runs": TASK_RUN_COLUMNS, "logs": LOG_COLUMNS}


@cache
def _variable_limit() -> int:
    with sqlite3.connect(":memory:") as db:
        return db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


@cache
def _values(width: int, rows: int) -> str:
    group = "(" + ",".join("?" * width) + ")"
    return ",".join([group] * rows)


CHUNK_ROWS = 256  # rows per statement: one prepared statement, reused from sqlite3's cache


def _chunks(rows: Sequence[Sequence[Any]], width: int) -> Iterator[tuple[int, list[Any]]]:
    size = max(1, min(CHUNK_ROWS, _variable_limit() // width))
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        flat: list[Any] = []
        for row in chunk:
            flat.extend(row)
        yield len(chunk), flat


def bulk_insert(
    table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> Iterator[tuple[str, list[Any]]]:
    """(sql, parameters) statements inserting ``rows`` into ``table`` (schema-qualified)."""
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    for count, flat in _chunks(rows, len(columns)):
        yield head + _values(len(columns), count), flat


def bulk_state_update(
    table: str, updates: Sequence[Sequence[Any]]
) -> Iterator[tuple[str, list[Any]]]:
    """(sql, parameters) statements applying merged state updates (one per row, see
    ``projection.merge_updates``). started keeps the first Running time; ended is set by a
    terminal state and cleared by a non-terminal one (a crashed run queued again is not ended)."""
    picked = ", ".join(f"column{i + 1} AS {name}" for i, name in enumerate(STATE_UPDATE_FIELDS))
    head = (
        f"UPDATE {table} AS t SET state_type = u.state_type, state_name = u.state_name, "
        "state_message = u.state_message, state_timestamp = u.state_timestamp, "
        "started = COALESCE(t.started, u.started), ended = u.ended, "
        "run_count = t.run_count + u.run_inc, result = COALESCE(u.result, t.result) "
        f"FROM (SELECT {picked} FROM (VALUES "
    )
    width = len(STATE_UPDATE_FIELDS)
    for count, flat in _chunks(updates, width):
        yield head + _values(width, count) + ")) AS u WHERE t.id = u.id", flat
