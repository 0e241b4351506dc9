"""Events of your own, under Prefect's module name (``prefect.events``).

    from flowbus.events import emit_event

    emit_event(
        event="file.uploaded",
        resource={"prefect.resource.id": "s3://bucket/report.csv", "team": "finance"},
        payload={"rows": 150},
    )

``DeploymentEventTrigger`` (Prefect's deployment trigger) starts a run of a deployment when
events match: give it to ``flow.deploy(triggers=[...])`` or under ``triggers:`` in prefect.yaml.

The event goes to the custom events stream, where automations match it by type, resource and
labels (the resource's other keys). With no flowbus server to reach (no ``$FLOWBUS_NATS_URL``
and no ``flowbus up`` on this machine) it is recorded in the local store instead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flowbus.broker import versions
from flowbus.engine.event_types import EventType
from flowbus.engine.loops import run_sync

#: The keys of a resource dict that give its id (Prefect's, then flowbus's own).
RESOURCE_ID_KEYS = ("prefect.resource.id", "flowbus.resource.id")


@dataclass(frozen=True)
class Event:
    """An event as emitted: its id, name (``event``), resource and payload."""

    event: str
    resource: dict[str, str]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred: datetime = field(default_factory=lambda: datetime.now(UTC))
    payload: dict[str, Any] = field(default_factory=dict)
    related: list[dict[str, str]] = field(default_factory=list)
    follows: str | None = None

    @property
    def resource_id(self) -> str | None:
        return next((self.resource[k] for k in RESOURCE_ID_KEYS if k in self.resource), None)

    @property
    def labels(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.resource.items() if k not in RESOURCE_ID_KEYS}


def emit_event(
    event: str,
    resource: dict[str, str],
    occurred: datetime | None = None,
    related: list[dict[str, str]] | None = None,
    payload: dict[str, Any] | None = None,
    id: str | None = None,
    follows: Any = None,
) -> Event:
    """Emit an event for automations (see the module's docstring); returns it.

    A malformed event name (letters, digits, ``_``, ``-`` between dots) raises ``ValueError``
    and nothing is sent. Emitting the same ``id`` twice records one event.
    """
    from flowbus.broker import protocol as p

    emitted = Event(
        event=event,
        resource=dict(resource),
        id=str(id or uuid.uuid4()),
        occurred=occurred or datetime.now(UTC),
        payload=dict(payload or {}),
        related=list(related or []),
        follows=str(getattr(follows, "id", follows)) if follows is not None else None,
    )
    wire = p.CustomEvent(id=emitted.id, type=emitted.event, occurred=emitted.occurred,
                         resource=emitted.resource_id, labels=emitted.labels,
                         payload=emitted.payload, related=emitted.related,
                         follows=emitted.follows)  # fmt: skip
    from flowbus.broker.connection import nats_configured

    if nats_configured():
        run_sync(_publish(wire))
    else:
        run_sync(_record_locally(wire))
    return emitted


async def _publish(wire: Any) -> None:
    from flowbus.broker import subjects
    from flowbus.client import Client

    async with Client() as client:
        await client.nats.jetstream().publish(
            subjects.custom_subject(wire.type),
            wire.dump(),
            headers=versions.with_version({"Nats-Msg-Id": wire.id}),
        )


async def _record_locally(wire: Any) -> None:
    import orjson

    from flowbus.engine.clock import canonical
    from flowbus.engine.records import make_record
    from flowbus.engine.store import store_from_url

    stream = str(uuid.uuid5(uuid.NAMESPACE_URL, f"flowbus:custom-event:{wire.id}"))
    fields = orjson.loads(wire.dump())
    fields["event_type"] = fields.pop("type")
    fields.pop("id", None)
    occurred = canonical(fields.pop("occurred"))
    record = make_record(stream, 1, EventType.CUSTOM_EVENT, fields, occurred, event_id=stream)
    async with store_from_url() as store:
        await store.append([record])


def __getattr__(name: str) -> object:
    # Loaded on first use: a script that only emits events does not load pydantic's models.
    if name in ("DeploymentEventTrigger", "DeploymentTrigger"):
        from flowbus.events.schemas import deployment_triggers

        return getattr(deployment_triggers, name)
    raise AttributeError(f"module 'flowbus.events' has no attribute {name!r}")


__all__ = ["DeploymentEventTrigger", "DeploymentTrigger", "Event", "emit_event"]
