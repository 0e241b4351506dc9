"""Events: the live feed (server-sent events), the events of runs by hand on machines that
report to this server (``POST /events``), and custom events (``POST /custom-events``).

Runs by hand (a profile, ``flowbus.remote.sink``) send their events here; they are recorded in
the store and published to the server's subscribers, as the recorder does for agents' events.
Only runs by hand: an event of a deployment's run is refused (those are arbitrated by the
orchestrators, fenced by attempt; a token holder must not bypass that). Each event is taken
once (by its id), so a client may send a batch again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, ValidationError

from flowbus.api.common import ERRORS, ErrorBody, client_of, server_sent_events, store_of
from flowbus.broker import subjects
from flowbus.client import Client, ClientError
from flowbus.engine.errors import SequenceError
from flowbus.engine.event_types import RUN_EVENT_TYPES
from flowbus.engine.events import DecodeError, FlowRunCreated, decode_event
from flowbus.engine.records import EventRecord
from flowbus.engine.store import EventStore

log = structlog.get_logger("flowbus.api")
_OWN_ERRORS = {
    403: "An event of a deployment's run (its agents report those).",
    409: "A gap in a run's order: send the events before it first.",
    422: "Not valid flowbus events of a run.",
}
router = APIRouter(responses={
    **ERRORS,
    **{status: {"model": ErrorBody, "description": text} for status, text in _OWN_ERRORS.items()},
})  # fmt: skip


class EventBatch(BaseModel):
    events: list[dict[str, Any]] = Field(max_length=1000)


def _records(batch: EventBatch) -> list[EventRecord]:
    records = []
    for data in batch.events:
        try:
            body = orjson.dumps(data)  # a lone surrogate or a 65-bit integer is no event
            event = decode_event(body)
        except (DecodeError, orjson.JSONEncodeError) as exc:
            raise ClientError("invalid_events", str(exc)) from exc
        if event.type not in RUN_EVENT_TYPES:
            raise ClientError("invalid_events", f"{event.type} is not an event of a run")
        records.append(EventRecord.from_data(orjson.loads(body), model=event))
    return records


async def _refuse_deployed_runs(store: EventStore, records: list[EventRecord]) -> None:
    created = {
        r.stream_id: event for r in records if isinstance(event := r.typed(), FlowRunCreated)
    }
    for stream_id in {record.stream_id for record in records}:
        if stream_id in created:
            deployed = bool(created[stream_id].deployment)
        else:
            run = await store.get_flow_run(stream_id)
            if run is None:
                continue  # its start is in a batch not sent yet: the store refuses the gap
            deployed = run.deployment is not None
        if deployed:
            raise ClientError("forbidden", f"run {stream_id} is a deployment's: agents report it")


@router.post("/events", tags=["events"])
async def record_events(request: Request, batch: EventBatch) -> dict[str, int]:
    """Record events of runs by hand (in each run's order: a gap is a 409 ``sequence_gap``,
    to be sent again once the events before have been); every event once."""
    store = store_of(request)
    records = _records(batch)
    await _refuse_deployed_runs(store, records)
    try:
        written = await store.append(records)
    except SequenceError as exc:
        raise ClientError("sequence_gap", str(exc)) from exc
    await _publish(client_of(request), records)
    return {"recorded": written, "received": len(records)}


async def _publish(client: Client, records: list[EventRecord]) -> None:
    """Live subscribers (the UI) see them too; the store already has them, so a failure here
    loses nothing."""
    try:
        js = client.nats.jetstream()
        for record in records:
            await js.publish(
                subjects.event_subject(record.stream_id, record.type), record.body(),
                headers={"Nats-Msg-Id": record.id, subjects.RECORDED_HEADER: "1"}, timeout=5,
            )  # fmt: skip
    except Exception as exc:
        log.warning("events recorded but not published", error=str(exc) or repr(exc))


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
        server_sent_events(request, client_of(request), run_id, types, since),
        media_type="text/event-stream",
    )


@router.post("/custom-events", status_code=201, tags=["events"])
async def emit_event(request: Request, event: dict[str, Any]) -> dict[str, Any]:
    """Publish an event of one's own (``type``, ``resource``, ``labels``, ``payload``,
    ``related``, optional ``id``: the same id twice is one event) for automations to react
    to."""
    try:
        published = await client_of(request).emit(
            event.get("type", ""), event.get("resource"), event.get("labels") or {},
            event.get("payload") or {}, event.get("id"), event.get("related") or [],
        )  # fmt: skip
    except ValidationError as exc:
        raise ClientError("invalid_events", f"not a valid event: {exc}") from exc
    return published.model_dump(mode="json")


__all__ = ["router"]
