"""Runs: listing (newest first, filtered, paged by cursor), a run's detail, events, result, task
runs and logs, and the actions on a run (cancel, resume, retry)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from flowbus.api.common import (
    ERRORS,
    Cursor,
    Limit,
    SendableBody,
    client_of,
    decode_cursor,
    encode_cursor,
    iso,
    run_or_404,
    server_sent_events,
    state_filter,
    store_of,
)
from flowbus.client import ClientError
from flowbus.engine.event_types import EventType
from flowbus.engine.states import StateType
from flowbus.views.run_detail import run_detail, stored_run_result
from flowbus.views.stats import run_activity

router = APIRouter(responses=ERRORS)


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
    store = store_of(request)
    if id_prefix is not None:
        found = await store.find_flow_runs(id_prefix, limit=limit)
        return RunPage(runs=[r.to_dict() for r in found], next_cursor=None)
    runs = await store.list_flow_runs(
        state=state_filter(state),
        flow_name=flow,
        parent_run_id=parent,
        limit=limit + 1,
        deployment=deployment,
        tag=tag,
        created_after=iso(created_after),
        created_before=iso(created_before),
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
    return await run_activity(store_of(request), hours, failures)


@router.get("/runs/{run_id}", tags=["runs"])
async def get_run(request: Request, run_id: str) -> dict[str, Any]:
    """A run with its parameters, state history, task runs, subflows and error."""
    store = store_of(request)
    return await run_detail(store, await run_or_404(store, run_id))


@router.get("/runs/{run_id}/events", tags=["runs"])
async def list_run_events(
    request: Request,
    run_id: str,
    after: Annotated[int, Query(ge=0, description="The seq of the last event read.")] = 0,
) -> list[dict[str, Any]]:
    """The run's recorded events in order (its stream in the store: states, task runs, logs,
    artifacts), after ``after``."""
    store = store_of(request)
    await run_or_404(store, run_id)
    return [event.to_dict() for event in await store.read_stream(run_id, after_seq=after)]


@router.get("/runs/{run_id}/result", tags=["runs"])
async def get_run_result(request: Request, run_id: str) -> dict[str, Any]:
    """A Completed run's result: ``result`` is the JSON value its flow returned; when the
    result is not JSON, ``result_ref`` is where the exact value is stored and ``result`` a JSON
    rendering of it, if it has one. 409 ``not_completed`` for a run that is not Completed."""
    store = store_of(request)
    run = await run_or_404(store, run_id)
    if run.state_type != StateType.COMPLETED:
        raise ClientError("not_completed", f"run {run.name} is {run.state_name}: no result")
    return await stored_run_result(store, run)


@router.get("/runs/{run_id}/task-runs", tags=["runs"])
async def list_task_runs(request: Request, run_id: str) -> list[dict[str, Any]]:
    store = store_of(request)
    await run_or_404(store, run_id)
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
    store = store_of(request)
    await run_or_404(store, run_id)
    lines = await store.get_logs(run_id, after_seq=after, limit=limit)
    return LogPage(
        logs=[line.to_dict() for line in lines],
        next_after=lines[-1].seq if len(lines) == limit else None,
    )


@router.post("/runs/{run_id}/cancel", tags=["runs"])
async def cancel_run(request: Request, run_id: str) -> dict[str, str]:
    """Cancel a run: a queued one at once, a running one through Cancelling."""
    await run_or_404(store_of(request), run_id)
    return {"run_id": run_id, "state": await client_of(request).cancel(run_id)}


class ResumeBody(SendableBody):
    WHAT = "input"
    #: The input the run's pause waits for (validated against its model).
    input: dict[str, Any] | None = None


@router.post("/runs/{run_id}/resume", tags=["runs"])
async def resume_run(request: Request, run_id: str, body: ResumeBody) -> dict[str, str]:
    """Resume a Paused run: queued again, its pause returns the input (422 when invalid)."""
    await run_or_404(store_of(request), run_id)
    return {"run_id": run_id, "state": await client_of(request).resume(run_id, body.input)}


@router.post("/runs/{run_id}/retry", tags=["runs"])
async def retry_run(request: Request, run_id: str) -> dict[str, str]:
    """Queue a Failed, Crashed, Cancelled or TimedOut run again, as a new attempt."""
    await run_or_404(store_of(request), run_id)
    return {"run_id": run_id, "state": await client_of(request).retry(run_id)}


@router.get("/runs/{run_id}/logs/stream", tags=["logs"])
async def stream_logs(request: Request, run_id: str) -> StreamingResponse:
    """A run's log lines, from its first, as they are written (server-sent events)."""
    await run_or_404(store_of(request), run_id)
    return StreamingResponse(
        server_sent_events(request, client_of(request), run_id, [EventType.LOG], None),
        media_type="text/event-stream",
    )


__all__ = ["router"]
