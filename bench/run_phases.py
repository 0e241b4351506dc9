"""Where one submit -> result call's time goes, read from the run's own state timestamps in
the SQLite store: the gaps between submit, Scheduled, Pending, Running, Completed and the
wait returning, as medians and p99s over the calls."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

from b4_dispatch import percentile


def phases(db: Path, calls: dict[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Per step, its median and p99 in milliseconds. ``calls``: run id -> (submitted,
    returned), wall-clock seconds (``time.time()``) taken by the caller."""
    gaps: dict[str, list[float]] = {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        for run_id, (submitted, returned) in calls.items():
            rows = conn.execute(
                "SELECT body FROM events WHERE stream_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
            states: dict[str, float] = {}
            for (body,) in rows:
                event = json.loads(body)
                if event["type"].startswith("flow_run") and "state" in event:
                    stamp = datetime.fromisoformat(event["state"]["timestamp"]).timestamp()
                    states.setdefault(event["state"]["name"], stamp)
            marks = [
                ("submit -> Scheduled recorded", submitted, states["Scheduled"]),
                ("Scheduled -> Pending (queue, fetch, claim)", states["Scheduled"],
                 states["Pending"]),
                ("Pending -> Running (flow started)", states["Pending"], states["Running"]),
                ("Running -> Completed (3 tasks)", states["Running"], states["Completed"]),
                ("Completed -> wait returned", states["Completed"], returned),
            ]  # fmt: skip
            for name, begin, end in marks:
                gaps.setdefault(name, []).append((end - begin) * 1000)
    return {
        name: {"p50": round(percentile(values, 0.5), 2), "p99": round(percentile(values, 0.99), 2)}
        for name, values in gaps.items()
    }
