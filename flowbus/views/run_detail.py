"""The detail of one flow run (``flowbus runs show``, ``GET /api/v1/runs/{id}``) assembled from
the store: projections for the current state of the run and its task runs, the event log for
their state histories."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flowbus.engine.artifacts import run_artifacts
from flowbus.engine.clock import canonical
from flowbus.engine.event_types import FLOW_RUN_STATES, TASK_RUN_STATES, EventType
from flowbus.engine.events import (
    FlowRunCreated,
    FlowRunStateChanged,
    FlowRunStateEvent,
    StoredEventModel,
    TaskRunCreated,
    TaskRunStateChanged,
)
from flowbus.engine.results import output_json
from flowbus.engine.store import EventStore, FlowRunView, StoredEvent, TaskRunView

TaskRunEvent = TaskRunCreated | TaskRunStateChanged
#: What a task run's history is made of: its states, and the claims that open attempts.
_TASK_HISTORY = TASK_RUN_STATES | {EventType.FLOW_RUN_STATE}


def _iso(when: datetime | None) -> str | None:
    return canonical(when) if when is not None else None


def duration(start: str | None, end: str | None) -> float | None:
    """Seconds between two ISO timestamps, or None when either is missing."""
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 6)


def _history_entry(event: FlowRunStateEvent | TaskRunEvent, seq: int) -> dict[str, Any]:
    state = event.state
    entry: dict[str, Any] = {
        "type": state.type.value,
        "name": state.name,
        "timestamp": canonical(state.timestamp),
        "message": state.message,
        #: The event's place in the run's stream: live events merge with the history by it.
        "seq": seq,
    }
    if isinstance(event, FlowRunCreated | FlowRunStateChanged) and event.actor:
        entry["actor"] = event.actor  # who asked for it: a submit, a cancel, a resume, a retry
    if isinstance(event, FlowRunStateChanged):
        if event.attempt is not None:  # a claim: attempt n of the run starts here
            entry["attempt"] = event.attempt
        if event.code_hash:  # the code the attempt ran (its entrypoint's SHA-256)
            entry["code_hash"] = event.code_hash
    return entry


def run_result(run: FlowRunView, events: list[StoredEventModel]) -> dict[str, Any]:
    """A run's result as ``GET /runs/{id}/result`` and ``runs result --json`` give it: the JSON
    value its Completed event recorded (None when it has none); when the result is not JSON,
    ``result_ref`` says where the exact value is stored (and ``result``, if not None, is a JSON
    rendering of it); and the short repr."""
    outputs = [e.output for e in events if isinstance(e, FlowRunStateChanged) and e.output]
    output = outputs[-1] if outputs else None
    return {
        "run_id": run.id,
        "state_type": run.state_type,
        "state_name": run.state_name,
        "result": output_json(output)[1],
        "result_ref": (output or {}).get("ref"),
        "result_summary": run.result,
    }


async def stored_run_result(store: EventStore, run: FlowRunView) -> dict[str, Any]:
    """``run_result`` of a run read from ``store``."""
    return run_result(run, _typed(await store.read_stream(run.id), FLOW_RUN_STATES))


def _typed(events: list[StoredEvent], types: frozenset[str]) -> list[StoredEventModel]:
    return [event.typed() for event in events if event.type in types]


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
    for stored in events:
        if stored.type not in _TASK_HISTORY:
            continue
        event = stored.typed()
        if isinstance(event, FlowRunStateChanged):
            attempt = event.attempt if event.attempt is not None else attempt
            continue
        if not isinstance(event, TaskRunCreated | TaskRunStateChanged):
            continue
        task_run_id = str(event.task_run_id)
        history.setdefault(task_run_id, []).append(_history_entry(event, stored.seq))
        attempts.setdefault(task_run_id, attempt)
        if isinstance(event, TaskRunStateChanged):
            if event.output is not None:
                outputs[task_run_id] = event.output
            if event.worker:
                workers[task_run_id] = event.worker
            if event.replay_of is not None:
                replays[task_run_id] = {"task_run_id": str(event.replay_of),
                                        "attempt": event.replayed_from}  # fmt: skip
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


async def _cancelled_by(
    store: EventStore, run_id: str, states: list[FlowRunStateEvent]
) -> str | None:
    """Who asked for the run's cancel: on the state it recorded, or (a cancel its agent
    carried out) in the audit trail."""
    for event in reversed(states):
        if event.state.type.value in ("CANCELLING", "CANCELLED") and event.actor:
            return event.actor
    if not any(e.state.type.value == "CANCELLED" for e in states):
        return None
    asked = [a for a in await store.list_audit(subject=run_id, limit=20)
             if a.action == "run.cancel_requested"]  # fmt: skip
    return asked[0].actor if asked else None


async def run_detail(store: EventStore, run: FlowRunView) -> dict[str, Any]:
    """Everything ``runs show --json`` prints; see docs/cli.md for the schema."""
    events = await store.read_stream(run.id)
    flow_history: list[dict[str, Any]] = []
    last_error: str | None = None
    states: list[FlowRunStateEvent] = []
    for stored in events:
        event = stored.typed() if stored.type in FLOW_RUN_STATES else None
        if isinstance(event, FlowRunCreated | FlowRunStateChanged):
            states.append(event)
            flow_history.append(_history_entry(event, stored.seq))
            last_error = event.state.traceback or last_error
    task_runs = _task_run_items(await store.list_task_runs(run.id), events)
    subflows = await store.list_flow_runs(parent_run_id=run.id, limit=1000)
    detail = run.to_dict()
    result = run_result(run, list(states))
    detail["result"] = result["result"]
    detail["result_ref"] = result["result_ref"]
    hashes = [h["code_hash"] for h in flow_history if "code_hash" in h]
    #: The SHA-256 of the entrypoint's file the latest attempt ran (None for a run by hand).
    detail["code_hash"] = hashes[-1] if hashes else None
    detail["duration_seconds"] = duration(run.started, run.ended)
    detail["state_history"] = flow_history
    detail["error"] = last_error if run.state_type in ("FAILED", "CRASHED") else None
    detail["task_runs"] = task_runs
    created = states[0] if states and isinstance(states[0], FlowRunCreated) else None
    paused = [e for e in states if isinstance(e, FlowRunStateChanged) and e.pause_key]
    #: While Paused: which pause, until when, and the JSON schema of the input it waits for.
    detail["pause"] = (
        {
            "pause_key": paused[-1].pause_key,
            "pause_timeout_at": _iso(paused[-1].pause_timeout_at),
            "input_schema": paused[-1].input_schema,
        }
        if run.state_type == "PAUSED" and paused
        else None
    )
    detail["scheduled_time"] = _iso(created.scheduled_time) if created else None
    #: The automation and event that started the run, if one did.
    detail["triggered_by"] = created.triggered_by if created else None
    #: Who submitted it and who cancelled it (an API token's name, cli:<user>, nats:<user>).
    detail["started_by"] = created.actor if created else None
    detail["cancelled_by"] = await _cancelled_by(store, run.id, states)
    detail["artifacts"] = [artifact.to_dict() for artifact in run_artifacts(events)]
    detail["subflow_runs"] = [
        {"id": s.id, "name": s.name, "flow_name": s.flow_name, "state_name": s.state_name}
        for s in reversed(subflows)
    ]
    return detail
