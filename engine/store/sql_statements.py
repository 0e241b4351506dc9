"""The SQL that applies a projection plan; ``{s}`` is the schema (``main`` or a scratch copy).

Every statement takes one parameter: a JSON array of all the rows of a batch, unpacked by
``json_each``. One statement per table per batch matters more than it seems: ``executemany``
releases and retakes the GIL around each row, and with engine threads running Python at the same
time each retake can wait a whole switch interval (measured here: 7 µs an event alone, 1.2 ms an
event next to a busy thread; one ``json_each`` statement: 10 and 23 µs).
"""

from __future__ import annotations

from flowbus.engine.store.projection import FLOW_RUN_COLUMNS, LOG_COLUMNS, TASK_RUN_COLUMNS

INSERT_EVENTS = (
    "INSERT INTO events (id, run_id, seq, type, occurred, body) "
    "SELECT json_extract(value, '$.id'), json_extract(value, '$.run_id'), "
    "json_extract(value, '$.seq'), json_extract(value, '$.type'), "
    "json_extract(value, '$.occurred'), value FROM json_each(?)"
)


def _insert(table: str, columns: tuple[str, ...]) -> str:
    values = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(columns)))
    return f"INSERT INTO {{s}}.{table} ({', '.join(columns)}) SELECT {values} FROM json_each(?)"


def _state_update(table: str) -> str:
    # One row of the parameter per updated row (see projection.merge_updates). started keeps the
    # first Running time; ended is set by a terminal state and cleared by a non-terminal one (a
    # crashed run queued again is not ended any more).
    fields = ("st", "sn", "sm", "ts", "started", "ended", "run_inc", "result", "id")
    picked = ", ".join(f"json_extract(value, '$[{i}]') AS {f}" for i, f in enumerate(fields))
    return (
        f"UPDATE {{s}}.{table} AS t SET state_type = u.st, state_name = u.sn, "
        "state_message = u.sm, state_timestamp = u.ts, started = COALESCE(t.started, u.started), "
        "ended = u.ended, run_count = t.run_count + u.run_inc, "
        "result = COALESCE(u.result, t.result) "
        f"FROM (SELECT {picked} FROM json_each(?)) AS u WHERE t.id = u.id"
    )


INSERT_FLOW_RUN = _insert("flow_runs", FLOW_RUN_COLUMNS)
INSERT_TASK_RUN = _insert("task_runs", TASK_RUN_COLUMNS)
INSERT_LOG = _insert("logs", LOG_COLUMNS)
UPDATE_FLOW_RUN = _state_update("flow_runs")
UPDATE_TASK_RUN = _state_update("task_runs")
PROJECTION_TABLES = ("flow_runs", "task_runs", "logs")
