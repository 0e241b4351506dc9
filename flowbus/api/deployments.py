"""Deployments: listing, one with its parameters' schema, submitting a run of one, and
recording one (``POST /deployments``: what ``flowbus deploy`` sends on a machine with a
profile; it loads the flow there, checks the parameters, and sends the ``deployment.saved``
event's fields, validated here by the same model)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import Field

from flowbus.api.common import ERRORS, SendableBody, client_of, store_of
from flowbus.client import ClientError
from flowbus.engine.deployments import deployment_id
from flowbus.engine.event_types import EventType
from flowbus.engine.events import DeploymentSaved
from flowbus.engine.ids import new_id
from flowbus.engine.schedules import describe_all
from flowbus.engine.store import EventStore

router = APIRouter(responses=ERRORS)


@router.get("/deployments", tags=["deployments"])
async def list_deployments(request: Request) -> list[dict[str, Any]]:
    return [d.to_dict() for d in await store_of(request).list_deployments()]


@router.get("/deployments/{flow_name}/{name}", tags=["deployments"])
async def get_deployment(request: Request, flow_name: str, name: str) -> dict[str, Any]:
    """A deployment with its parameters' JSON schema (what a run form is built from) and its
    schedules (``schedule_details`` adds each one's summary and next slot)."""
    store = store_of(request)
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


class RunRequestBody(SendableBody):
    WHAT = "parameters"
    parameters: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, max_length=512)
    tags: list[str] = Field(default_factory=list)


@router.post("/deployments/{flow_name}/{name}/runs", status_code=201, tags=["deployments"])
async def create_run(
    request: Request, flow_name: str, name: str, body: RunRequestBody
) -> dict[str, Any]:
    """Submit a run, validated as ``flowbus run`` is: bad parameters are a 422 with pydantic's
    message, and nothing is queued."""
    run = await client_of(request).submit(
        f"{flow_name}/{name}", body.parameters, body.idempotency_key, body.tags
    )
    return run.__dict__


#: The envelope a body stands in for: made here, not given.
_ENVELOPE = {"schema_version": 1, "seq": 1, "occurred": "2000-01-01T00:00:00Z",
             "type": EventType.DEPLOYMENT_SAVED}  # fmt: skip


def validated(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a ``deployment.saved`` event, checked by its model (a 422 otherwise)."""
    envelope = {**_ENVELOPE, "id": new_id(), "stream_id": new_id()}
    try:
        event = DeploymentSaved.model_validate({**fields, **envelope})
    except ValueError as exc:  # pydantic's ValidationError
        raise ClientError("invalid_deployment", f"not a valid deployment: {exc}") from exc
    if event.name != f"{event.flow_name}/{event.deployment_name}":
        raise ClientError("invalid_deployment", "name must be <flow_name>/<deployment_name>")
    return event.model_dump(mode="json", exclude=set(_ENVELOPE) | {"id", "stream_id"})


@router.post("/deployments", status_code=201, tags=["deployments"])
async def save_deployment(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """Record a deployment (a new version when it exists); the deployment as recorded."""
    store: EventStore = request.app.state.store
    fields = validated(body)
    await store.append_next(deployment_id(fields["name"]), EventType.DEPLOYMENT_SAVED, fields)
    saved = await store.get_deployment(fields["name"])
    assert saved is not None
    return saved.to_dict()


__all__ = ["router"]
