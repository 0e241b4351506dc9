"""``POST /api/v1/deployments``: record a deployment sent by ``flowbus deploy`` on a machine
with a profile (it loads the flow there, checks the parameters, and sends what it would have
recorded). The body is a ``deployment.saved`` event's fields, validated by the same model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from flowbus.api.routes import _ERRORS
from flowbus.client import ClientError
from flowbus.engine.deployments import deployment_id
from flowbus.engine.event_types import EventType
from flowbus.engine.events import DeploymentSaved
from flowbus.engine.ids import new_id
from flowbus.engine.store import EventStore

router = APIRouter(responses=_ERRORS)
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
