"""The detail of one flow run (``flowbus runs show``) assembled from the store: projections for
the current state of the run and its task runs, the event log for their state histories."""

from __future__ import annotations

from typing import Any

from flowbus.cli.common import duration
from flowbus.engine.artifacts import run_artifacts
from flowbus.engine.results import output_json
from flowbus.engine.store import EventStore, FlowRunView, StoredEvent, TaskRunView


def _history_entry(event: StoredEvent) -> dict[str, Any]:
    state = event.data["state"]
    entry = {
        "type": state["type"],
        "name": state["name"],
        "timestamp": state["timestamp"],
        "message": state.get("message"),
        #: The event's place in the run's stream: live events merge with the history by it.
        "seq": event.seq,
    }
    if event.data.get("attempt") is not None:  # a claim: attempt n of the run starts here
        entry["attempt"] = event.data["attempt"]
    if event.data.get("code_hash"):  # the code the attempt ran (its entrypoint's SHA-256)
        entry["code_hash"] = event.data["code_hash"]
    return entry


def run_result(run: FlowRunView, events: list[StoredEvent]) -> dict[str, Any]:
    """A run's result as ``GET /runs/{id}/result`` and ``runs result --json`` give it: the JSON
    value its Completed event recorded (None when it has none); when the result is not JSON,
    ``result_ref`` says where the exact value is stored (and ``result``, if not None, is a JSON
    rendering of it); and the short repr."""
    output = _last_output(events, "flow_run.state")
    return {
        "run_id": run.id,
        "state_type": run.state_type,
        "state_name": run.state_name,
        "result": output_json(output)[1],
        "result_ref": (output or {}).get("ref"),
        "result_summary": run.result,
    }


def _last_output(events: list[StoredEvent], kind: str) -> dict[str, Any] | None:
    for event in reversed(events):
        if event.type == kind and event.data.get("output") is not None:
            output: dict[str, Any] = event.data["output"]
            return output
    return None


def _task_run_items(
    task_runs: list[TaskRunView], events: list[StoredEvent]
) -> list[dict[str, Any]]:
    """Task runs with their histories, results as JSON, attempts and replays."""
    history: dict[str, list[dict[str, Any]]] = {}
    outputs: dict[str, dict[str, Any]] = {}
    replays: dict[str, dict[str, Any]] = {}
    attempts: dict[str, int] = {}
    workers: dict[str, str] = {}
    attempt = 0
    for event in events:
        data = event.data
        if event.type == "flow_run.state" and data.get("attempt") is not None:
            attempt = data["attempt"]
        elif event.type in ("task_run.created", "task_run.state"):
            task_run_id = data["task_run_id"]
            history.setdefault(task_run_id, []).append(_history_entry(event))
            attempts.setdefault(task_run_id, attempt)
            if data.get("output") is not None:
                outputs[task_run_id] = data["output"]
            if data.get("worker"):
                workers[task_run_id] = data["worker"]
            if data.get("replay_of") is not None:
                replays[task_run_id] = {"task_run_id": data["replay_of"],
                                        "attempt": data.get("replayed_from")}  # fmt: skip
    items = []
    for task_run in task_runs:
        item = task_run.to_dict()
        item["result"] = output_json(outputs.get(task_run.id))[1]
        item["retries"] = task_run.retries
        item["duration_seconds"] = duration(task_run.started, task_run.ended)
        item["state_history"] = history.get(task_run.id, [])
        #: The flow run's attempt it belongs to (0 for a run by hand), and for a replayed
        #: task run, the task run (and attempt) whose result it returned.
        item["attempt"] = attempts.get(task_run.id, 0)
        item["replay_of"] = replays.get(task_run.id)
        #: The Dask or Ray worker that ran its last call (None: the flow's own process).
        item["worker"] = workers.get(task_run.id)
        items.append(item)
    return items


async def run_detail(store: EventStore, run: FlowRunView) -> dict[str, Any]:
    """Everything ``runs show --json`` prints; see docs/cli.md for the schema."""
    events = await store.read_stream(run.id)
    flow_history: list[dict[str, Any]] = []
    last_error: str | None = None
    for event in events:
        if event.type in ("flow_run.created", "flow_run.state"):
            flow_history.append(_history_entry(event))
            last_error = event.data["state"].get("traceback") or last_error
    task_runs = _task_run_items(await store.list_task_runs(run.id), events)
    subflows = await store.list_flow_runs(parent_run_id=run.id, limit=1000)
    detail = run.to_dict()
    result = run_result(run, events)
    detail["result"] = result["result"]
    detail["result_ref"] = result["result_ref"]
    hashes = [h["code_hash"] for h in flow_history if "code_hash" in h]
    #: The SHA-256 of the entrypoint's file the latest attempt ran (None for a run by hand).
    detail["code_hash"] = hashes[-1] if hashes else None
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
