"""Events: frozen, typed, versioned messages; every state change of a run is one of them.

Every event belongs to one stream (``stream_id``) and carries that stream's own sequence number
``seq`` (1, 2, 3, ...): the store rejects a gap or a duplicate. A flow run is a stream whose id is
the run's id; its task runs and log lines are events of that stream. Other things recorded as
events (deployments, schedules, ...) are streams of their own. ``id`` is unique; appending the
same event twice is a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from flowbus.engine.errors import FlowbusError
from flowbus.engine.records import SCHEMA_VERSION
from flowbus.engine.schedules import CatchUp, DeploymentSchedule, Overlap
from flowbus.engine.states import StateType
from flowbus.engine.unknown_fields import validate_tolerant


class DecodeError(FlowbusError, ValueError):
    """Bytes that are not a valid flowbus event."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StatePayload(_Frozen):
    """A state as it travels in events: type, name, time, message and, on failure, a traceback."""

    type: StateType
    name: str
    timestamp: datetime
    message: str | None = None
    traceback: str | None = None


class _EventBase(_Frozen):
    schema_version: Literal[1] = SCHEMA_VERSION
    id: UUID
    stream_id: UUID
    seq: int = Field(ge=1)
    occurred: datetime


class FlowRunCreated(_EventBase):
    type: Literal["flow_run.created"] = "flow_run.created"
    flow_name: str
    name: str
    flow_version: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    parent_run_id: UUID | None = None
    parent_task_run_id: UUID | None = None
    deployment: str | None = None
    #: Set for runs of a deployment: the work queue it was sent to, and the submitter's key.
    queue: str | None = None
    idempotency_key: str | None = None
    #: When a run made ahead of time should start (a schedule's slot); None means now.
    scheduled_time: datetime | None = None
    #: The deployment schedule that made the run (its id), if one did.
    schedule_id: int | None = None
    #: The automation and event that started the run, if one did.
    triggered_by: dict[str, str] | None = None
    #: Who submitted it: an API token's name, ``cli:<user>``, a service's (``engine/actors.py``).
    actor: str | None = None
    #: A subflow's identity for replay in a run that records results: the n-th call of its
    #: flow in the parent's try, the hash of its parameters, and the parent's attempt.
    position: int | None = None
    input_hash: str | None = None
    parent_attempt: int | None = None
    state: StatePayload


class FlowRunStateChanged(_EventBase):
    type: Literal["flow_run.state"] = "flow_run.state"
    state: StatePayload
    #: A short human-readable summary of the result (a repr).
    result: str | None = None
    #: On Completed: the result itself, ``{"json": V}`` or ``{"ref": URL, ...}`` (``results``).
    output: dict[str, Any] | None = None
    #: On a claim (Pending, written by the orchestrator): the agent that holds the run and the
    #: attempt number its lease fences with.
    agent: str | None = None
    attempt: int | None = None
    #: On Paused (``pause_flow_run``): which pause, until when, and the JSON schema of the
    #: input it waits for; on the resume (Scheduled): that pause and the input given.
    pause_key: str | None = None
    pause_timeout_at: datetime | None = None
    input_schema: dict[str, Any] | None = None
    resume_input: dict[str, Any] | None = None
    #: On a decision that fences the run's open attempt (a crash, a hand-back, a cancel
    #: recorded without the agent): that attempt, whose late events are refused from now on.
    closes_attempt: int | None = None
    #: On a retry asked for (``flowbus runs retry``): the run is queued again as a new attempt.
    retried: bool | None = None
    #: On the first Running of an attempt of a deployed run: the SHA-256 of the entrypoint's
    #: file as the agent loaded it (the code that ran).
    code_hash: str | None = None
    #: On a replayed subflow run (Completed, named Replayed): the subflow run whose result it
    #: returned, and the parent's attempt that ran it.
    replay_of: UUID | None = None
    replayed_from: int | None = None
    #: On a decision only the leading orchestrator takes (a lease expiry, Late, a pause's
    #: timeout): the leader's term, its fencing token.
    leader_term: int | None = None
    #: On a change someone asked for (a cancel, a resume, a retry): who.
    actor: str | None = None


class TaskRunCreated(_EventBase):
    type: Literal["task_run.created"] = "task_run.created"
    task_run_id: UUID
    task_key: str
    name: str
    tags: list[str] = Field(default_factory=list)
    map_index: int | None = None
    cache_key: str | None = None
    upstream: list[UUID] = Field(default_factory=list)
    #: Its identity for replay (in a run that records results): the n-th call of its task in
    #: the flow body's try, and the hash of its inputs (None when they cannot be hashed).
    position: int | None = None
    input_hash: str | None = None
    state: StatePayload


class TaskRunStateChanged(_EventBase):
    type: Literal["task_run.state"] = "task_run.state"
    task_run_id: UUID
    state: StatePayload
    #: A short human-readable summary of the result (a repr).
    result: str | None = None
    #: On Completed, in a run that records results: the result itself (see ``results``).
    output: dict[str, Any] | None = None
    #: On a replayed task run (Completed, named Replayed): the task run whose result it
    #: returned, and the attempt of the flow run that ran it.
    replay_of: UUID | None = None
    replayed_from: int | None = None
    #: The worker that ran the call this state follows, with a distributed task runner
    #: (``tcp://10.0.0.7:40105 (host-7)``).
    worker: str | None = None


class DeploymentSaved(_EventBase):
    """A deployment defined or redefined: a stream of its own (its id derives from its name)."""

    type: Literal["deployment.saved"] = "deployment.saved"
    name: str  # "<flow name>/<deployment name>"
    flow_name: str
    deployment_name: str
    entrypoint: str
    working_dir: str
    queue: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    parameter_schema: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    description: str | None = None
    #: The flow's own retries (applied by the engine to a run that fails).
    retries: int = 0
    #: How often a run whose agent or process died is queued again before it ends Crashed.
    crash_retries: int = 3
    schedules: list[DeploymentSchedule] = Field(default_factory=list)
    #: After downtime, which missed slots get a run.
    catchup: CatchUp = "latest"
    #: What a slot does while the deployment's previous run is still running.
    overlap: Overlap = "allow"
    #: Runs of the deployment queued or under way at once, at most (None: no limit).
    concurrency_limit: int | None = Field(default=None, ge=1)
    #: A run over the limit waits its turn (enqueue) or is cancelled at once (cancel).
    collision: Literal["enqueue", "cancel"] = "enqueue"
    #: The SHA-256 of the entrypoint's file when it was deployed.
    entrypoint_hash: str | None = None
    #: The blocks its runs may load on an agent, as ``<type>/<name>`` patterns (``*``
    #: wildcards); None: any block.
    blocks: list[str] | None = None
    #: Who deployed it.
    actor: str | None = None


class LogEmitted(_EventBase):
    type: Literal["log"] = "log"
    task_run_id: UUID | None = None
    level: int
    logger: str
    message: str


ArtifactType = Literal["markdown", "table", "link", "progress", "image"]


class ArtifactCreated(_EventBase):
    """An artifact a run published (``flowbus.artifacts``); ``key`` makes it the latest of a
    series that ``Artifact.get(key)`` finds."""

    type: Literal["artifact.created"] = "artifact.created"
    artifact_id: UUID
    key: str | None = Field(default=None, pattern=r"^[a-z0-9-]+$", max_length=200)
    artifact_type: ArtifactType
    data: Any = None
    description: str | None = None
    task_run_id: UUID | None = None


class ArtifactUpdated(_EventBase):
    """New data for an artifact (a progress artifact moving on)."""

    type: Literal["artifact.updated"] = "artifact.updated"
    artifact_id: UUID
    key: str | None = Field(default=None, pattern=r"^[a-z0-9-]+$", max_length=200)
    artifact_type: ArtifactType | None = None
    data: Any = None
    description: str | None = None


class DocumentSaved(_EventBase):
    """A document's new version (``documents.py``): a variable, a block, a limit, an
    automation, ...; one stream per (kind, name)."""

    type: Literal["document.saved"] = "document.saved"
    kind: str
    name: str
    body: Any = None
    #: Who saved it.
    actor: str | None = None


class DocumentDeleted(_EventBase):
    type: Literal["document.deleted"] = "document.deleted"
    kind: str
    name: str
    actor: str | None = None


class AutomationFired(_EventBase):
    """The first event of a firing's stream (one per automation and triggering event),
    written before any of its actions: an event delivered again fires nothing twice."""

    type: Literal["automation.fired"] = "automation.fired"
    automation: str
    #: The triggering event as automations see it (``engine/automations.py``).
    event: dict[str, Any]


class AutomationAction(_EventBase):
    """What one action of a firing did (``ok``), or why it failed (``error``)."""

    type: Literal["automation.action"] = "automation.action"
    automation: str
    event_id: str
    action: str
    ok: bool
    error: str | None = None
    #: What the action acted on, by kind: the run it started or cancelled, the queue it
    #: paused, the deployment whose schedule it paused, the webhook's answer, the subject.
    run_id: str | None = None
    run_name: str | None = None
    state: str | None = None
    queue: str | None = None
    deployment: str | None = None
    status: int | None = None
    url: str | None = None
    subject: str | None = None


class CustomEventRecorded(_EventBase):
    """A custom event (``emit_event`` with no server) recorded in the local store; its
    stream id is also its event id."""

    type: Literal["custom.event"] = "custom.event"
    event_type: str
    resource: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    payload: dict[str, Any] = Field(default_factory=dict)
    related: list[dict[str, str]] = Field(default_factory=list)
    follows: str | None = None


class BlockRead(_EventBase):
    """The orchestrator handed a block to a run on an agent (its stream: this one event)."""

    type: Literal["block.read"] = "block.read"
    #: ``<block type>/<name>``.
    block: str
    run_id: str
    attempt: int
    deployment: str
    #: The agent holding the run's attempt.
    agent: str | None = None
    #: ``agent:<name>``: who the block was handed to (the audit trail lists it).
    actor: str | None = None


class AuditEntry(_EventBase):
    """Something a person caused that no event of its own records (a cancel handed to the
    run's agent, a queue paused): one event in a stream of its own."""

    type: Literal["audit.entry"] = "audit.entry"
    #: ``run.cancel_requested``, ``queue.updated``, ...
    action: str
    #: What it acted on: a run id, a queue's name.
    subject: str
    actor: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


#: What may arrive on the events stream (agents, runs by hand, the API's ingest).
WireEvent = (
    FlowRunCreated
    | FlowRunStateChanged
    | TaskRunCreated
    | TaskRunStateChanged
    | LogEmitted
    | DeploymentSaved
    | ArtifactCreated
    | ArtifactUpdated
)
Event = Annotated[WireEvent, Field(discriminator="type")]
#: Every event the store holds.
StoredEventModel = Annotated[
    WireEvent
    | DocumentSaved
    | DocumentDeleted
    | AutomationFired
    | AutomationAction
    | CustomEventRecorded
    | BlockRead
    | AuditEntry,
    Field(discriminator="type"),
]
#: The state events of a flow run (its creation is its first state).
FlowRunStateEvent = FlowRunCreated | FlowRunStateChanged
EVENT_TYPES: tuple[type[_EventBase], ...] = (
    FlowRunCreated,
    FlowRunStateChanged,
    TaskRunCreated,
    TaskRunStateChanged,
    LogEmitted,
    DeploymentSaved,
    ArtifactCreated,
    ArtifactUpdated,
    DocumentSaved,
    DocumentDeleted,
    AutomationFired,
    AutomationAction,
    CustomEventRecorded,
    BlockRead,
    AuditEntry,
)
_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
_STORED: TypeAdapter[StoredEventModel] = TypeAdapter(StoredEventModel)


def decode_event(data: bytes | str, tolerant: bool = False) -> Event:
    """Parse and validate one event from the wire (JSON); any problem raises ``DecodeError``.
    ``tolerant``: fields this version does not know are set aside (an event of a newer minor
    version, ``broker/versions.py``)."""
    try:
        if tolerant:
            return validate_tolerant(_ADAPTER.validate_json, data)
        return _ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise DecodeError(f"not a valid flowbus event: {exc}") from exc


def parse_event(data: Mapping[str, Any]) -> StoredEventModel:
    """The typed model of any stored event's body (``EventRecord.data``, ``StoredEvent.data``);
    raises ``DecodeError`` for a body that is none of them.

    Validated as JSON: pydantic's JSON path turns the ids and times from their text itself,
    where validating the dict calls back into Python for each (three times the cost, measured
    in the orchestrator under load). A field this version does not know is set aside: a newer
    orchestrator may have recorded it (during an upgrade, host by host)."""
    try:
        return validate_tolerant(_STORED.validate_json, orjson.dumps(data))
    except ValidationError as exc:
        raise DecodeError(f"not a valid flowbus event: {exc}") from exc


def encode_event(event: _EventBase) -> str:
    """The event's canonical JSON text."""
    return event.model_dump_json()
