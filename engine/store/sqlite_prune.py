"""``SqliteEventStore.prune`` on its connection's thread (``EventStore.prune`` says what it
removes)."""

from __future__ import annotations

import sqlite3

from flowbus.engine.store import sql_statements as q


def prune_runs(connection: sqlite3.Connection, run_ids: list[str]) -> int:
    """``prune`` on the connection's thread: one transaction, in chunks of SQLite's bound
    parameters (999 on old builds)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        gone = 0
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for hour, state_type, runs in connection.execute(
                f"SELECT substr(created, 1, 13), state_type, count(*) FROM flow_runs "
                f"WHERE id IN ({marks}) GROUP BY 1, 2", chunk
            ).fetchall():  # fmt: skip
                connection.execute("UPDATE run_counts SET runs = runs - ? "
                                   "WHERE hour = ? AND state_type = ?",
                                   (runs, hour, state_type))  # fmt: skip
            for sql in q.PRUNE_STATEMENTS:
                connection.execute(sql.format(marks=marks), chunk)
            gone += connection.execute(
                f"DELETE FROM flow_runs WHERE id IN ({marks})", chunk
            ).rowcount
        connection.execute("DELETE FROM run_counts WHERE runs <= 0")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    # Freed pages go back to the file system when the store was made to allow it (new
    # stores are: auto_vacuum incremental); otherwise SQLite reuses them for new events.
    connection.execute("PRAGMA incremental_vacuum")
    return gone


__all__ = ["prune_runs"]
