"""Every event the store's own writers record (documents, deployments, automation firings,
custom events recorded locally) validates against its model, as the engine's events do."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowbus import flow
from flowbus.agents.automations import AutomationEngine
from flowbus.broker.protocol import CustomEvent
from flowbus.engine.automations import Automation
from flowbus.engine.deployments import build_deployment, redefine, save_deployment
from flowbus.engine.documents import delete_document, save_document
from flowbus.engine.event_types import EventType
from flowbus.engine.events import parse_event
from flowbus.engine.store import EventStore, MemoryEventStore, store_from_url
from flowbus.events import _record_locally


@flow
def greet(name: str = "world") -> str:
    return f"hello {name}"


async def every_event(store: EventStore) -> list[tuple[str, object]]:
    events = await store.read_all(0, limit=10_000)
    return [(event.type, parse_event(event.data)) for event in events]


async def test_what_the_store_writers_record_validates(tmp_path: Path) -> None:
    store = MemoryEventStore()
    await store.open()
    await save_document(store, "variable", "region", {"value": "eu"})
    await delete_document(store, "variable", "region")
    spec = build_deployment(greet, "daily", "flows.py:greet", tmp_path)
    await save_deployment(store, spec)
    await redefine(store, spec.name, lambda fields: {**fields, "tags": ["redefined"]})
    automation = Automation.model_validate({
        "name": "cancel-on-upload",
        "trigger": {"kind": "event", "match": {"type": "file.uploaded"}},
        "actions": [{"kind": "pause-schedule", "deployment": "nowhere/none"}],
    })  # fmt: skip
    engine = AutomationEngine(None, store)  # type: ignore[arg-type]  # no action reaches NATS
    event = {"id": "upload-1", "type": "file.uploaded", "resource": "s3://raw/a.csv",
             "labels": {}, "payload": {}, "occurred": "2026-12-07T00:00:00+00:00"}  # fmt: skip
    assert await engine.fire(automation, event) == 1
    recorded = await every_event(store)
    kinds = [kind for kind, _ in recorded]
    for kind in (EventType.DOCUMENT_SAVED, EventType.DOCUMENT_DELETED, EventType.DEPLOYMENT_SAVED,
                 EventType.AUTOMATION_FIRED, EventType.AUTOMATION_ACTION):  # fmt: skip
        assert kind in kinds
    for kind, model in recorded:
        assert getattr(model, "type") == kind  # noqa: B009 - every model has one


async def test_a_custom_event_recorded_locally_validates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWBUS_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    wire = CustomEvent(id="e-1", type="file.uploaded", occurred="2026-12-07T00:00:00Z",
                       resource="s3://raw/a.csv", labels={"bucket": "raw"})  # fmt: skip
    await _record_locally(wire)
    async with store_from_url() as store:
        [(kind, model)] = await every_event(store)
    assert kind == EventType.CUSTOM_EVENT
    assert getattr(model, "event_type") == "file.uploaded"  # noqa: B009
