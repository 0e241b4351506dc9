"""The SQL that applies a projection plan; ``{s}`` is the schema (``main`` or a scratch copy)."""

from __future__ import annotations

from flowbus.engine.store.projection import FLOW_RUN_COLUMNS, LOG_COLUMNS, TASK_RUN_COLUMNS


def _insert(table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {{s}}.{table} ({', '.join(columns)}) VALUES ({marks})"


def _state_update(table: str) -> str:
    # started keeps the first Running time; ended is set by a terminal state and cleared by a
    # non-terminal one (a crashed run queued again is not ended any more).
    return (
        f"UPDATE {{s}}.{table} SET state_type = ?, state_name = ?, state_message = ?, "
        "state_timestamp = ?, started = COALESCE(started, ?), ended = ?, "
        "run_count = run_count + ?, result = COALESCE(?, result) WHERE id = ?"
    )


INSERT_FLOW_RUN = _insert("flow_runs", FLOW_RUN_COLUMNS)
INSERT_TASK_RUN = _insert("task_runs", TASK_RUN_COLUMNS)
INSERT_LOG = _insert("logs", LOG_COLUMNS)
UPDATE_FLOW_RUN = _state_update("flow_runs")
UPDATE_TASK_RUN = _state_update("task_runs")
PROJECTION_TABLES = ("flow_runs", "task_runs", "logs")
