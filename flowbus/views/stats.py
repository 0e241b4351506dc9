"""What a dashboard shows of the runs: how many were created each hour lately, in which state
they are now, and the latest failures. Shared by the HTTP API and ``flowbus runs stats``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flowbus.engine.store import EventStore

#: The state types a failure listing includes.
FAILURE_TYPES = ("FAILED", "CRASHED")


async def run_activity(
    store: EventStore, hours: int, failures: int = 10, now: datetime | None = None
) -> dict[str, Any]:
    """Runs created in the last ``hours`` hours (the current one included), counted per hour and
    current state type, every hour present (zeros too) so a chart needs no gap filling; totals
    per state type; and the ``failures`` latest failed or crashed runs of any age."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    counts = await store.count_runs_by_hour(first.isoformat())
    by_hour: dict[str, dict[str, int]] = {
        (first + timedelta(hours=i)).strftime("%Y-%m-%dT%H"): {} for i in range(hours)
    }
    totals: dict[str, int] = {}
    for count in counts:
        by_hour.setdefault(count.hour, {})[count.state_type] = count.count
        totals[count.state_type] = totals.get(count.state_type, 0) + count.count
    recent = [
        run
        for state in FAILURE_TYPES
        for run in await store.list_flow_runs(state=state, limit=failures)
    ]
    recent.sort(key=lambda run: (run.state_timestamp, run.id), reverse=True)
    return {
        "since": first.isoformat(),
        "hours": [
            {"hour": f"{hour}:00:00+00:00", "counts": counts} for hour, counts in by_hour.items()
        ],
        "totals": totals,
        "recent_failures": [run.to_dict() for run in recent[:failures]],
    }
