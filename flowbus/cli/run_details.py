"""The detail of one flow run (``flowbus runs show``) assembled from the store: projections for
the current state of the run and its task runs, the event log for their state histories."""

from __future__ import annotations

from typing import Any

from flowbus.cli.common import duration
from flowbus.engine.artifacts import run_artifacts
from flowbus.engine.store import EventStore, FlowRunView, StoredEvent


def _history_entry(event: StoredEvent) -> dict[str, Any]:
    state = event.data["state"]
    return {
        "type": state["type"],
        "name": state["name"],
        "timestamp": state["timestamp"],
        "message": state.get("message"),
    }


async def run_detail(store: EventStore, run: FlowRunView) -> dict[str, Any]:
    """Everything ``runs show --json`` prints; see docs/cli.md for the schema."""
    events = await store.read_stream(run.id)
    flow_history: list[dict[str, Any]] = []
    task_history: dict[str, list[dict[str, Any]]] = {}
    last_error: str | None = None
    for event in events:
        if event.type in ("flow_run.created", "flow_run.state"):
            flow_history.append(_history_entry(event))
            last_error = event.data["state"].get("traceback") or last_error
        elif event.type in ("task_run.created", "task_run.state"):
            task_history.setdefault(event.data["task_run_id"], []).append(_history_entry(event))
    task_runs = []
    for task_run in await store.list_task_runs(run.id):
        item = task_run.to_dict()
        item["retries"] = task_run.retries
        item["duration_seconds"] = duration(task_run.started, task_run.ended)
        item["state_history"] = task_history.get(task_run.id, [])
        task_runs.append(item)
    subflows = await store.list_flow_runs(parent_run_id=run.id, limit=1000)
    detail = run.to_dict()
    detail["duration_seconds"] = duration(run.started, run.ended)
    detail["state_history"] = flow_history
    detail["error"] = last_error if run.state_type in ("FAILED", "CRASHED") else None
    detail["task_runs"] = task_runs
    created = events[0].data if events and events[0].type == "flow_run.created" else {}
    paused = [e.data for e in events if e.type == "flow_run.state" and "pause_key" in e.data]
    last = paused[-1] if paused else {}
    #: While Paused: which pause, until when, and the JSON schema of the input it waits for.
    detail["pause"] = (
        {k: last.get(k) for k in ("pause_key", "pause_timeout_at", "input_schema")}
        if run.state_type == "PAUSED" and last
        else None
    )
    detail["scheduled_time"] = created.get("scheduled_time")
    #: The automation and event that started the run, if one did.
    detail["triggered_by"] = created.get("triggered_by")
    detail["artifacts"] = [artifact.to_dict() for artifact in run_artifacts(events)]
    detail["subflow_runs"] = [
        {"id": s.id, "name": s.name, "flow_name": s.flow_name, "state_name": s.state_name}
        for s in reversed(subflows)
    ]
    return detail
