"""The endpoints of ``/api/v1``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, model_validator

from flowbus.cli.run_details import run_detail, stored_run_result
from flowbus.client import Client, ClientError
from flowbus.engine.artifacts import latest as latest_artifact
from flowbus.engine.artifacts import run_artifacts
from flowbus.engine.automations import AUTOMATION, AUTOMATION_STATUS
from flowbus.engine.blocks import BLOCK, BLOCK_TYPE, shown_block
from flowbus.engine.deployments import set_schedules_active
from flowbus.engine.errors import UsageError
from flowbus.engine.event_types import EventType
from flowbus.engine.events import DeploymentSaved
from flowbus.engine.schedules import describe_all
from flowbus.engine.states import StateType
from flowbus.engine.store import EventStore
from flowbus.engine.variables import VARIABLE
from flowbus.stats import run_activity


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error the API answers with."""

    error: ErrorDetail


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "A request the orchestrator refused as malformed.",
        401: "No valid bearer token (when the server has one).",
        404: "No such run, deployment or path.",
        409: "The run cannot be cancelled, resumed (it is not Paused) or retried.",
        422: "Invalid query, body or flow parameters.",
        502: "The orchestrator answered unexpectedly.",
        503: "No orchestrator, or the store is unavailable.",
        504: "The orchestrator did not answer in time.",
    }.items()
}
router = APIRouter(responses=_ERRORS)
#: Queue names are NATS subject tokens.
QueueName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]+$", max_length=200)]
#: A cursor is the (created, id) of the last run of the previous page, written with digits only
#: (``20261124T060000.061998|<run id>``) so it needs no escaping in a URL.
Cursor = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9]{8}T[0-9]{6}\.[0-9]{6}\|[0-9a-f-]{1,36}$",
        description="The next_cursor of the previous page.",
    ),
]

Limit = Annotated[int, Query(ge=1, le=500, description="Items per page.")]


def _store(request: Request) -> EventStore:
    store: EventStore = request.app.state.store
    return store


def _client(request: Request) -> Client:
    client: Client = request.app.state.client
    return client


# --- cursors ------------------------------------------------------------------------------------


def encode_cursor(created: str, run_id: str) -> str:
    """``2026-11-24T06:00:00.061998+00:00`` becomes ``20261124T060000.061998``."""
    compact = created.removesuffix("+00:00").replace("-", "").replace(":", "")
    return f"{compact}|{run_id}"


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The keyset of a cursor; any value of the documented form is a valid place to start."""
    compact, _, run_id = cursor.partition("|")
    day, _, clock = compact.partition("T")
    created = f"{day[:4]}-{day[4:6]}-{day[6:]}T{clock[:2]}:{clock[2:4]}:{clock[4:]}+00:00"
    return created, run_id


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _state_filter(value: str | None) -> str | None:
    """A state type in any case (``failed``), or a state name as written (``Late``)."""
    if value is not None and value.upper() in StateType.__members__:
        return value.upper()
    return value


# --- runs ---------------------------------------------------------------------------------------


class RunPage(BaseModel):
    runs: list[dict[str, Any]]
    #: Pass as ``cursor`` for the next page; None on the last one.
    next_cursor: str | None


@router.get("/runs", response_model=RunPage, tags=["runs"])
async def list_runs(
    request: Request,
    state: Annotated[str | None, Query(description="A state type or name.")] = None,
    flow: Annotated[str | None, Query(description="A flow name.")] = None,
    deployment: Annotated[str | None, Query(description='"flow/deployment".')] = None,
    tag: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    parent: Annotated[str | None, Query(description="Subflow runs of this run.")] = None,
    id_prefix: Annotated[
        str | None, Query(pattern=r"^[0-9a-f-]{1,36}$", description="Runs whose id starts so.")
    ] = None,
) -> RunPage:
    """Flow runs, newest first; filters combine (``id_prefix`` alone: the runs whose id starts
    with it, at most ``limit``)."""
    store = _store(request)
    if id_prefix is not None:
        found = await store.find_flow_runs(id_prefix, limit=limit)
        return RunPage(runs=[r.to_dict() for r in found], next_cursor=None)
    runs = await store.list_flow_runs(
        state=_state_filter(state),
        flow_name=flow,
        parent_run_id=parent,
        limit=limit + 1,
        deployment=deployment,
        tag=tag,
        created_after=_iso(created_after),
        created_before=_iso(created_before),
        cursor=decode_cursor(cursor) if cursor else None,
    )
    page, more = runs[:limit], len(runs) > limit
    next_cursor = encode_cursor(page[-1].created, page[-1].id) if more else None
    return RunPage(runs=[r.to_dict() for r in page], next_cursor=next_cursor)


class HourCounts(BaseModel):
    #: The hour's start (UTC).
    hour: str
    #: Runs created in that hour, by their current state type.
    counts: dict[str, int]


class RunActivity(BaseModel):
    since: str
    hours: list[HourCounts]
    totals: dict[str, int]
    recent_failures: list[dict[str, Any]]


@router.get("/stats/runs", response_model=RunActivity, tags=["runs"])
async def run_stats(
    request: Request,
    hours: Annotated[int, Query(ge=1, le=168, description="How many hours back.")] = 24,
    failures: Annotated[int, Query(ge=0, le=100, description="Latest failures listed.")] = 10,
) -> dict[str, Any]:
    """Runs created in the last hours, counted per hour by current state type, and the latest
    failed or crashed runs (what the dashboard draws)."""
    return await run_activity(_store(request), hours, failures)


async def _run_or_404(store: EventStore, run_id: str) -> Any:
    run = await store.get_flow_run(run_id)
    if run is None:
        raise HTTPException(404, f"no flow run {run_id}")
    return run


@router.get("/runs/{run_id}", tags=["runs"])
async def get_run(request: Request, run_id: str) -> dict[str, Any]:
    """A run with its parameters, state history, task runs, subflows and error."""
    store = _store(request)
    return await run_detail(store, await _run_or_404(store, run_id))


@router.get("/runs/{run_id}/events", tags=["runs"])
async def list_run_events(
    request: Request,
    run_id: str,
    after: Annotated[int, Query(ge=0, description="The seq of the last event read.")] = 0,
) -> list[dict[str, Any]]:
    """The run's recorded events in order (its stream in the store: states, task runs, logs,
    artifacts), after ``after``."""
    store = _store(request)
    await _run_or_404(store, run_id)
    return [event.to_dict() for event in await store.read_stream(run_id, after_seq=after)]


@router.get("/runs/{run_id}/result", tags=["runs"])
async def get_run_result(request: Request, run_id: str) -> dict[str, Any]:
    """A Completed run's result: ``result`` is the JSON value its flow returned; when the
    result is not JSON, ``result_ref`` is where the exact value is stored and ``result`` a JSON
    rendering of it, if it has one. 409 ``not_completed`` for a run that is not Completed."""
    store = _store(request)
    run = await _run_or_404(store, run_id)
    if run.state_type != StateType.COMPLETED:
        raise ClientError("not_completed", f"run {run.name} is {run.state_name}: no result")
    return await stored_run_result(store, run)


@router.get("/runs/{run_id}/artifacts", tags=["artifacts"])
async def list_run_artifacts(request: Request, run_id: str) -> list[dict[str, Any]]:
    """A run's artifacts in creation order, each with its latest data."""
    store = _store(request)
    await _run_or_404(store, run_id)
    return [a.to_dict() for a in run_artifacts(await store.read_stream(run_id))]


@router.get("/artifacts/{key}", tags=["artifacts"])
async def get_artifact(request: Request, key: str) -> dict[str, Any]:
    """The latest artifact recorded under ``key``."""
    found = await latest_artifact(_store(request), key)
    if found is None:
        raise HTTPException(404, f"no artifact with key {key!r}")
    return found.to_dict()


@router.get("/runs/{run_id}/task-runs", tags=["runs"])
async def list_task_runs(request: Request, run_id: str) -> list[dict[str, Any]]:
    store = _store(request)
    await _run_or_404(store, run_id)
    return [t.to_dict() for t in await store.list_task_runs(run_id)]


class LogPage(BaseModel):
    logs: list[dict[str, Any]]
    #: Pass as ``after`` for the next page; None when this page is the last so far.
    next_after: int | None


@router.get("/runs/{run_id}/logs", response_model=LogPage, tags=["logs"])
async def get_logs(
    request: Request,
    run_id: str,
    after: Annotated[int, Query(ge=0, description="The seq of the last line read.")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> LogPage:
    store = _store(request)
    await _run_or_404(store, run_id)
    lines = await store.get_logs(run_id, after_seq=after, limit=limit)
    return LogPage(
        logs=[line.to_dict() for line in lines],
        next_after=lines[-1].seq if len(lines) == limit else None,
    )


@router.post("/runs/{run_id}/cancel", tags=["runs"])
async def cancel_run(request: Request, run_id: str) -> dict[str, str]:
    """Cancel a run: a queued one at once, a running one through Cancelling."""
    await _run_or_404(_store(request), run_id)
    return {"run_id": run_id, "state": await _client(request).cancel(run_id)}


class ResumeBody(BaseModel):
    #: The input the run's pause waits for (validated against its model).
    input: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _encodable(self) -> ResumeBody:
        try:
            orjson.dumps(self.model_dump())
        except orjson.JSONEncodeError as exc:
            raise ValueError(f"input cannot be sent on: {exc}") from exc
        return self


@router.post("/runs/{run_id}/resume", tags=["runs"])
async def resume_run(request: Request, run_id: str, body: ResumeBody) -> dict[str, str]:
    """Resume a Paused run: queued again, its pause returns the input (422 when invalid)."""
    await _run_or_404(_store(request), run_id)
    return {"run_id": run_id, "state": await _client(request).resume(run_id, body.input)}


@router.post("/runs/{run_id}/retry", tags=["runs"])
async def retry_run(request: Request, run_id: str) -> dict[str, str]:
    """Queue a Failed, Crashed, Cancelled or TimedOut run again, as a new attempt."""
    await _run_or_404(_store(request), run_id)
    return {"run_id": run_id, "state": await _client(request).retry(run_id)}


# --- deployments --------------------------------------------------------------------------------


@router.get("/deployments", tags=["deployments"])
async def list_deployments(request: Request) -> list[dict[str, Any]]:
    return [d.to_dict() for d in await _store(request).list_deployments()]


@router.get("/deployments/{flow_name}/{name}", tags=["deployments"])
async def get_deployment(request: Request, flow_name: str, name: str) -> dict[str, Any]:
    """A deployment with its parameters' JSON schema (what a run form is built from) and its
    schedules (``schedule_details`` adds each one's summary and next slot)."""
    store = _store(request)
    deployment = await store.get_deployment(f"{flow_name}/{name}")
    if deployment is None:
        raise HTTPException(404, f"no deployment {flow_name}/{name}")
    saved = [
        event
        for stored in await store.read_stream(deployment.id)
        if isinstance(event := stored.typed(), DeploymentSaved)
    ]
    entrypoint_hash = saved[-1].entrypoint_hash if saved else None
    return {**deployment.to_dict(), "schedule_details": describe_all(deployment),
            "entrypoint_hash": entrypoint_hash}  # fmt: skip


class RunRequestBody(BaseModel):
    parameters: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, max_length=512)
    tags: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _encodable(self) -> RunRequestBody:
        # JSON may hold what no message can carry: lone surrogates ("\ud800"), integers
        # beyond 64 bits.
        try:
            orjson.dumps(self.model_dump())
        except orjson.JSONEncodeError as exc:
            raise ValueError(f"parameters cannot be sent on: {exc}") from exc
        return self


@router.post("/deployments/{flow_name}/{name}/runs", status_code=201, tags=["deployments"])
async def create_run(
    request: Request, flow_name: str, name: str, body: RunRequestBody
) -> dict[str, Any]:
    """Submit a run, validated as ``flowbus run`` is: bad parameters are a 422 with pydantic's
    message, and nothing is queued."""
    run = await _client(request).submit(
        f"{flow_name}/{name}", body.parameters, body.idempotency_key, body.tags
    )
    return run.__dict__


# --- schedules ----------------------------------------------------------------------------------


@router.get("/schedules", tags=["schedules"])
async def list_schedules(request: Request) -> list[dict[str, Any]]:
    """Every deployment's schedules, with their next slot and the deployment's policies."""
    return [
        {"deployment": d.name, "catchup": d.catchup, "overlap": d.overlap, **row}
        for d in await _store(request).list_deployments()
        for row in describe_all(d)
    ]


async def _set_schedule(
    request: Request, flow_name: str, name: str, schedule_id: int, active: bool
) -> list[dict[str, Any]]:
    try:
        saved = await set_schedules_active(
            _store(request), f"{flow_name}/{name}", schedule_id, active
        )
    except UsageError as exc:
        raise HTTPException(404, str(exc)) from exc
    return describe_all(saved)


ScheduleId = Annotated[int, Path(ge=1, le=1000)]


@router.post("/deployments/{flow_name}/{name}/schedules/{schedule_id}/pause", tags=["schedules"])
async def pause_schedule(
    request: Request, flow_name: str, name: str, schedule_id: ScheduleId
) -> list[dict[str, Any]]:
    """Pause one schedule: no runs for its slots; runs made ahead are cancelled at their slot."""
    return await _set_schedule(request, flow_name, name, schedule_id, False)


@router.post("/deployments/{flow_name}/{name}/schedules/{schedule_id}/resume", tags=["schedules"])
async def resume_schedule(
    request: Request, flow_name: str, name: str, schedule_id: ScheduleId
) -> list[dict[str, Any]]:
    """Resume a schedule; the slots of its pause are not caught up."""
    return await _set_schedule(request, flow_name, name, schedule_id, True)


# --- blocks and variables -----------------------------------------------------------------------


@router.get("/blocks", tags=["blocks"])
async def list_blocks(request: Request) -> list[dict[str, Any]]:
    """Every block, secret fields masked (``********``)."""
    return [shown_block(doc) for doc in await _store(request).list_documents(BLOCK)]


@router.get("/blocks/{type_name}/{name}", tags=["blocks"])
async def get_block(request: Request, type_name: str, name: str) -> dict[str, Any]:
    found = await _store(request).get_document(BLOCK, f"{type_name}/{name}")
    if found is None:
        raise HTTPException(404, f"no block {type_name}/{name}")
    return shown_block(found)


@router.get("/block-types", tags=["blocks"])
async def list_block_types(request: Request) -> list[dict[str, Any]]:
    """Registered block types with their JSON schema and secret fields."""
    return [{"type": d.name, **d.body} for d in await _store(request).list_documents(BLOCK_TYPE)]


@router.get("/variables", tags=["variables"])
async def list_variables(request: Request) -> list[dict[str, Any]]:
    return [
        {"name": d.name, "value": d.body, "updated": d.updated, "version": d.version}
        for d in await _store(request).list_documents(VARIABLE)
    ]


@router.get("/variables/{name}", tags=["variables"])
async def get_variable(request: Request, name: str) -> dict[str, Any]:
    found = await _store(request).get_document(VARIABLE, name)
    if found is None:
        raise HTTPException(404, f"no variable {name}")
    return {"name": found.name, "value": found.body, "updated": found.updated,
            "version": found.version}  # fmt: skip


# --- automations --------------------------------------------------------------------------------


@router.get("/automations", tags=["automations"])
async def list_automations(request: Request) -> list[dict[str, Any]]:
    """Automations: trigger, actions, whether enabled, and ``status``: how often it fired and
    its last firing (event, and each action's outcome, such as the run it started)."""
    store = _store(request)
    status = {d.name: d.body for d in await store.list_documents(AUTOMATION_STATUS)}
    return [
        {**d.body, "updated": d.updated, "version": d.version, "status": status.get(d.name)}
        for d in await store.list_documents(AUTOMATION)
    ]


# --- queues and agents --------------------------------------------------------------------------


@router.get("/queues", tags=["queues"])
async def list_queues(request: Request) -> list[dict[str, Any]]:
    return [q.model_dump(mode="json") for q in await _client(request).queues()]


@router.post("/queues/{name}/pause", tags=["queues"])
async def pause_queue(request: Request, name: QueueName) -> dict[str, Any]:
    return (await _client(request).update_queue(name, paused=True)).model_dump(mode="json")


@router.post("/queues/{name}/resume", tags=["queues"])
async def resume_queue(request: Request, name: QueueName) -> dict[str, Any]:
    return (await _client(request).update_queue(name, paused=False)).model_dump(mode="json")


@router.get("/limits", tags=["queues"])
async def list_limits(request: Request) -> list[dict[str, Any]]:
    """Tag concurrency limits, with the slots held (by which task runs) and waited for."""
    return [limit.model_dump(mode="json") for limit in await _client(request).limits()]


@router.get("/agents", tags=["agents"])
async def list_agents(request: Request) -> list[dict[str, Any]]:
    return [a.model_dump(mode="json") for a in await _client(request).agents()]


# --- live events --------------------------------------------------------------------------------


@router.get("/events/stream", tags=["events"])
async def stream_events(
    request: Request,
    run_id: str | None = None,
    types: Annotated[list[str] | None, Query(description="Event types to send.")] = None,
    since: datetime | None = None,
) -> StreamingResponse:
    """Server-sent events: a run's events from its start (``run_id``), or every event from
    ``since`` or from now. Each SSE message has the event's id, type and JSON."""
    return StreamingResponse(
        _sse(request, _client(request), run_id, types, since), media_type="text/event-stream"
    )


@router.get("/runs/{run_id}/logs/stream", tags=["logs"])
async def stream_logs(request: Request, run_id: str) -> StreamingResponse:
    """A run's log lines, from its first, as they are written (server-sent events)."""
    await _run_or_404(_store(request), run_id)
    return StreamingResponse(
        _sse(request, _client(request), run_id, [EventType.LOG], None),
        media_type="text/event-stream",
    )


async def _sse(
    request: Request,
    client: Client,
    run_id: str | None,
    types: list[str] | None,
    since: datetime | None,
) -> AsyncIterator[bytes]:
    yield b": connected\n\n"  # so the client sees the stream open before the first event
    events = client.events(run_id=run_id, types=types, since=since)
    async with contextlib.aclosing(events) as stream:
        async for event in stream:
            if await request.is_disconnected():
                return
            data = orjson.dumps(event.model_dump(mode="json"))
            yield b"id: %s\nevent: %s\ndata: %s\n\n" % (
                str(event.id).encode(),
                event.type.encode(),
                data,
            )
