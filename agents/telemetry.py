"""The orchestrator's counters and histogram for ``GET /metrics`` (prometheus-client's registry
of the process): what the recorder recorded, how long runs waited to start, lease expiries.

Observed where the work happens and nowhere else: the recorder (the leader's) counts what it
commits; the janitor counts the leases it expires. A rate in Prometheus gives per second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import Counter, Histogram

from flowbus.engine.event_types import RUN_EVENT_TYPES, EventType
from flowbus.engine.events import FlowRunStateChanged
from flowbus.engine.records import EventRecord

EVENTS_RECORDED = Counter(
    "flowbus_events_recorded", "Events the recorder committed to the store", ["type"]
)
TASK_RUNS_RECORDED = Counter("flowbus_task_runs_recorded", "Task runs the recorder committed")
START_LATENCY = Histogram(
    "flowbus_run_start_latency_seconds",
    "From a run being queued to its flow starting (its first Running of an attempt)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
LEASE_EXPIRIES = Counter("flowbus_lease_expiries", "Runs crashed because their lease ran out")


def recorded(records: Iterable[EventRecord], queued_at: Callable[[str], float | None]) -> None:
    """Count a committed batch; ``queued_at(run_id)`` is when the run was queued (epoch
    seconds), for the start latency of a run that started."""
    counts: dict[str, int] = {}
    for record in records:
        # The event types of a run are counted by name, others as "other" (few labels).
        kind = record.type if record.type in RUN_EVENT_TYPES else "other"
        counts[kind] = counts.get(kind, 0) + 1
        if kind != EventType.FLOW_RUN_STATE:
            continue
        event = record.typed()
        if isinstance(event, FlowRunStateChanged) and event.state.name == "Running":
            since = queued_at(record.stream_id)
            if since is not None:
                START_LATENCY.observe(max(event.state.timestamp.timestamp() - since, 0.0))
    for kind, count in counts.items():
        EVENTS_RECORDED.labels(kind).inc(count)
    if EventType.TASK_RUN_CREATED in counts:
        TASK_RUNS_RECORDED.inc(counts[EventType.TASK_RUN_CREATED])
