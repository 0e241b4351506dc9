"""What every route module of the API shares: the error body, the store and client the app
holds, cursors, the types of path and query parameters, and server-sent events."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, ClassVar

import orjson
from fastapi import HTTPException, Path, Query, Request
from pydantic import BaseModel, model_validator

from flowbus.client import Client
from flowbus.engine.states import StateType
from flowbus.engine.store import EventStore, FlowRunView


class SendableBody(BaseModel):
    """A request body whose content goes on to the orchestrators in a message. JSON may hold
    what no message can carry (lone surrogates, integers beyond 64 bits): refused here, a 422
    naming ``WHAT``, rather than a failure further on."""

    WHAT: ClassVar[str] = "the request"

    @model_validator(mode="after")
    def _encodable(self) -> Any:
        try:
            orjson.dumps(self.model_dump())
        except orjson.JSONEncodeError as exc:
            raise ValueError(f"{self.WHAT} cannot be sent on: {exc}") from exc
        return self


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error the API answers with."""

    error: ErrorDetail


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """``{"error": {"code", "message", "details"}}``."""
    return ErrorBody(error=ErrorDetail(code=code, message=message, details=details)).model_dump()


#: The errors every route may answer with (the OpenAPI document lists them).
ERRORS: dict[int | str, dict[str, Any]] = {
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


def store_of(request: Request) -> EventStore:
    """The store the app reads."""
    store: EventStore = request.app.state.store
    return store


def client_of(request: Request) -> Client:
    """The client the app acts through (the orchestrators, over NATS)."""
    client: Client = request.app.state.client
    return client


async def run_or_404(store: EventStore, run_id: str) -> FlowRunView:
    run = await store.get_flow_run(run_id)
    if run is None:
        raise HTTPException(404, f"no flow run {run_id}")
    return run


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


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def state_filter(value: str | None) -> str | None:
    """A state type in any case (``failed``), or a state name as written (``Late``)."""
    if value is not None and value.upper() in StateType.__members__:
        return value.upper()
    return value


async def server_sent_events(
    request: Request,
    client: Client,
    run_id: str | None,
    types: list[str] | None,
    since: datetime | None,
) -> AsyncIterator[bytes]:
    """Events as server-sent events, each with its id, type and JSON, until the client goes."""
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


__all__ = [
    "ERRORS",
    "Cursor",
    "ErrorBody",
    "ErrorDetail",
    "Limit",
    "QueueName",
    "client_of",
    "decode_cursor",
    "encode_cursor",
    "error_body",
    "iso",
    "run_or_404",
    "server_sent_events",
    "state_filter",
    "store_of",
]
