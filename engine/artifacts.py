"""Artifacts: what a run publishes for people to read (a report as markdown, a table, a link,
a progress bar, an image), recorded as events of the run. An artifact made outside any run (in
a script, as Prefect allows) is recorded against no run, as a stream of its own.

An artifact with a ``key`` is the newest of a series: the store keeps the latest artifact of
each key as a document of kind ``artifact`` (projected from the run events, so a rebuild gives
it back), which ``Artifact.get(key)`` and ``GET /api/v1/artifacts/{key}`` read.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowbus.engine.context import flow_run_var, task_run_var
from flowbus.engine.errors import MissingContextError
from flowbus.engine.event_types import EventType
from flowbus.engine.records import json_safe

if TYPE_CHECKING:  # the store's projection uses ``artifact_document``: no import at run time
    from flowbus.engine.store import EventStore, StoredEvent

ARTIFACT = "artifact"
TYPES = ("markdown", "table", "link", "progress", "image")
_KEY = re.compile(r"[a-z0-9-]{1,200}")
#: Artifacts created by this process: key, type and description, which an update repeats so
#: that the latest-by-key document stays whole.
_created: dict[str, tuple[str | None, str | None, str | None]] = {}
_created_lock = threading.Lock()


@dataclass
class ArtifactView:
    """One artifact as read back: its latest data."""

    id: str
    key: str | None
    type: str
    data: Any
    description: str | None
    flow_run_id: str | None
    task_run_id: str | None
    created: str
    updated: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_key(key: str | None) -> str | None:
    if key is not None and not _KEY.fullmatch(key):
        raise ValueError(f"artifact key {key!r}: use lowercase letters, digits and '-'")
    return key


def publish(
    artifact_type: str, data: Any, key: str | None = None, description: str | None = None
) -> str:
    """Record a new artifact in the current run; returns its id."""
    if artifact_type not in TYPES:
        raise ValueError(f"artifact type {artifact_type!r}: one of {', '.join(TYPES)}")
    task_ctx = task_run_var.get()
    flow_ctx = task_ctx.flow_run_context if task_ctx else flow_run_var.get()
    artifact_id = str(uuid.uuid4())
    fields = {
        "artifact_id": artifact_id,
        "key": check_key(key),
        "artifact_type": artifact_type,
        "data": json_safe(data),
        "description": description,
        "task_run_id": task_ctx.task_run.id if task_ctx else None,
    }
    if flow_ctx is None:  # a script's own: recorded against no run, in a stream of its own
        _record_alone(artifact_id, EventType.ARTIFACT_CREATED, fields)
    else:
        flow_ctx.stream.emit(EventType.ARTIFACT_CREATED, fields)
    with _created_lock:
        _created[artifact_id] = (key, artifact_type, description)
    return artifact_id


def update(artifact_id: str, data: Any, description: str | None = None) -> str:
    """Record new data for an artifact (from the current run)."""
    task_ctx = task_run_var.get()
    flow_ctx = task_ctx.flow_run_context if task_ctx else flow_run_var.get()
    key, kind, first_description = _created.get(str(artifact_id), (None, None, None))
    fields = {"artifact_id": str(artifact_id), "key": key, "artifact_type": kind,
              "data": json_safe(data), "description": description or first_description}  # fmt: skip
    if flow_ctx is None:
        if str(artifact_id) not in _created:
            raise MissingContextError("an artifact of a run is updated inside that run")
        _record_alone(str(artifact_id), EventType.ARTIFACT_UPDATED, fields)
    else:
        flow_ctx.stream.emit(EventType.ARTIFACT_UPDATED, fields)
    return str(artifact_id)


def _record_alone(artifact_id: str, kind: str, fields: dict[str, Any]) -> None:
    """An artifact made outside any run (a script's, as Prefect allows): its events are a
    stream of their own, whose id is the artifact's, in the configured store."""
    from flowbus.engine.documents import using_store
    from flowbus.engine.loops import run_sync

    async def append(store: EventStore) -> None:
        await store.append_next(artifact_id, kind, fields)

    run_sync(using_store(None, append))


def artifact_document(data: dict[str, Any], earlier: dict[str, Any] | None) -> dict[str, Any]:
    """The ``artifact`` document body an artifact event leaves (pure: used by the projection)."""
    body = dict(earlier or {})
    if data["type"] == EventType.ARTIFACT_CREATED or body.get("id") != data["artifact_id"]:
        # An artifact made outside any run is a stream of its own: it belongs to no run.
        run_id = None if data["stream_id"] == data["artifact_id"] else data["stream_id"]
        body = {"id": data["artifact_id"], "type": data.get("artifact_type"),
                "description": None, "flow_run_id": run_id,
                "task_run_id": data.get("task_run_id"), "created": data["occurred"]}  # fmt: skip
    body["key"] = data.get("key")
    body["data"] = data.get("data")
    if data.get("artifact_type"):
        body["type"] = data["artifact_type"]
    if data.get("description") is not None:
        body["description"] = data["description"]
    body["updated"] = data["occurred"]
    return body


def run_artifacts(events: list[StoredEvent]) -> list[ArtifactView]:
    """A run's artifacts in creation order, each with its latest data, from its events."""
    bodies: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.type in (EventType.ARTIFACT_CREATED, EventType.ARTIFACT_UPDATED):
            data = event.data
            bodies[data["artifact_id"]] = artifact_document(data, bodies.get(data["artifact_id"]))
    return [_view(body) for body in bodies.values()]


def _view(body: dict[str, Any]) -> ArtifactView:
    return ArtifactView(
        id=body["id"], key=body.get("key"), type=body.get("type") or "markdown",
        data=body.get("data"), description=body.get("description"),
        flow_run_id=body.get("flow_run_id"), task_run_id=body.get("task_run_id"),
        created=body.get("created", ""), updated=body.get("updated", ""),
    )  # fmt: skip


async def latest_of_each_key(store: EventStore) -> list[ArtifactView]:
    """The newest artifact of every key, the most recently updated first."""
    views = [_view(document.body) for document in await store.list_documents(ARTIFACT)]
    return sorted(views, key=lambda view: view.updated, reverse=True)


async def latest(store: EventStore, key: str) -> ArtifactView | None:
    """The newest artifact recorded under ``key``, or None."""
    found = await store.get_document(ARTIFACT, key)
    return _view(found.body) if found is not None else None
