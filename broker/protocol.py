"""The JSON messages of the wire protocol (docs/protocol.md), as pydantic models.

Every request a daemon takes is validated here first: anything else gets an ``ErrorReply`` (for
a request) or is dead-lettered (for a stream message); nothing malformed reaches the logic.
Replies are ``{"ok": true, ...}`` or ``{"ok": false, "error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, Field

# The foundations, re-exported: every user of the protocol imports this module alone.
from flowbus.broker.protocol_base import (  # noqa: F401
    MAX_REQUEST_BYTES,
    ErrorDetail,
    ErrorReply,
    M,
    ProtocolError,
    _Message,
    decode,
    decode_reply,
    error,
    error_reply,
    validation_details,
)

# Concurrency slots, in a module of their own (re-exported: users import this module alone).
from flowbus.broker.protocol_slots import (  # noqa: F401
    HAND,
    HeldSlots,
    LimitInfo,
    LimitList,
    SlotGrant,
    SlotRelease,
    SlotRenew,
    SlotReply,
    SlotRequest,
)

# --- submitting and cancelling (services, CLI) -------------------------------------------------


class SubmitRequest(_Message):
    """``flowbus.api.submit``: run a deployment."""

    deployment: str = Field(description='"<flow name>/<deployment name>"')
    parameters: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, max_length=512)
    tags: list[str] = Field(default_factory=list)
    #: Start no earlier than this (a schedule's slot, ISO 8601 with a zone); None: now. The run
    #: is Scheduled at once and queued when the time comes.
    scheduled_time: AwareDatetime | None = None
    #: The deployment schedule the run is for: when that slot comes, the deployment's overlap
    #: policy applies, and a schedule paused or removed by then cancels the run.
    schedule_id: int | None = Field(default=None, ge=1)
    #: What started the run, when an automation did: ``{"automation", "event_id",
    #: "event_type"}`` (recorded with the run, shown by the UI).
    triggered_by: dict[str, str] | None = None
    #: Who asks (an API token's name, ``cli:<user>``, ``nats:<user>``): recorded as the
    #: event's ``actor``. The requester's own statement (docs/security.md).
    actor: str | None = Field(default=None, max_length=200)


class SubmitReply(_Message):
    ok: Literal[True] = True
    run_id: str
    name: str
    queue: str
    #: False when the idempotency key named a run submitted before: this is that run.
    created: bool


class CancelRequest(_Message):
    """``flowbus.api.cancel``."""

    run_id: str
    #: Who asks (an API token's name, ``cli:<user>``, ``nats:<user>``): recorded as the
    #: event's ``actor``. The requester's own statement (docs/security.md).
    actor: str | None = Field(default=None, max_length=200)


class CancelReply(_Message):
    ok: Literal[True] = True
    run_id: str
    #: The run's state after the request: Cancelled, Cancelling, or the final state it had.
    state: str


# --- work queues ----------------------------------------------------------------------------------


class RunRequest(_Message):
    """A message on ``flowbus.run.<queue>``: run this (already recorded, Scheduled) run."""

    run_id: str
    deployment: str
    #: How many times the orchestrator has sent this run to a queue (1, then 2 after a requeue).
    dispatch: int = 1


class QueueSettings(_Message):
    """A work queue's settings: the value of its key in the ``flowbus_queues`` bucket."""

    name: str
    #: Higher first: an agent on several queues takes from the highest-priority one with work.
    priority: int = 0
    #: Runs of this queue in flight across all agents; None for no limit.
    concurrency_limit: int | None = Field(default=None, ge=1)
    paused: bool = False


class QueueUpdate(_Message):
    """``flowbus.api.queue.update``: change some settings of a queue (created if new)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    priority: int | None = None
    concurrency_limit: int | None = Field(default=None, ge=0, description="0 removes the limit")
    paused: bool | None = None
    #: Who asks (an API token's name, ``cli:<user>``, ``nats:<user>``): recorded as the
    #: event's ``actor``. The requester's own statement (docs/security.md).
    actor: str | None = Field(default=None, max_length=200)


class QueueInfo(_Message):
    settings: QueueSettings
    #: Requests waiting in the queue, and runs of it in flight (taken, not acked).
    waiting: int
    in_flight: int


class QueueUpdated(QueueInfo):
    """The reply to ``flowbus.api.queue.update``: the queue as it is now."""

    ok: Literal[True] = True


class DeploymentList(_Message):
    """The reply to ``flowbus.api.deployments``: every deployment as ``flowbus deployments ls
    --json`` shows it (its ``parameter_schema`` is what a submission is validated against)."""

    ok: Literal[True] = True
    deployments: list[dict[str, Any]]


class QueueList(_Message):
    ok: Literal[True] = True
    queues: list[QueueInfo]


# --- agents ------------------------------------------------------------------------------


class ClaimRequest(_Message):
    """``flowbus.agent.claim``: an agent took a run request and asks for the run."""

    run_id: str
    agent: str
    #: The request's delivery count (``num_delivered``), for the record.
    delivery: int = 1
    #: The queue the request was taken from: set by the orchestrator from the subject
    #: (``flowbus.agent.claim.<queue>``), never from the body.
    queue: str | None = Field(default=None, exclude=True)


class ClaimGrant(_Message):
    ok: Literal[True] = True
    run_id: str
    #: The fencing token: the agent's events carry it; a later claim supersedes it.
    attempt: int
    #: The sequence number of the claim's event: the agent's first event is ``seq + 1``.
    seq: int
    name: str
    flow_name: str
    deployment: str
    entrypoint: str
    working_dir: str
    parameters: dict[str, Any]
    tags: list[str]
    lease_seconds: float
    #: Inputs of the run's pauses already resumed, by pause key (``pause_flow_run``).
    resumes: dict[str, Any] = Field(default_factory=dict)
    #: The attempt's secret: the agent signs each event of the run with it
    #: (``Flowbus-Fence-Mac``, ``broker/fencing.py``). Never logged, never passed on.
    attempt_key: str | None = Field(default=None, repr=False)
    #: The slot the run was scheduled for (a schedule's, or ``scheduled_time`` of its submit);
    #: None for a run queued to start at once (``runtime.flow_run.scheduled_start_time``).
    scheduled_time: AwareDatetime | None = None


class ClaimRefusal(_Message):
    ok: Literal[False] = False
    #: "finished", "cancelled", "leased" (a live agent holds it), "starting" (granted to
    #: another agent that has not started it: put the request back), "unknown", "illegal".
    reason: str
    message: str


class HeldRun(_Message):
    run_id: str
    attempt: int


class Heartbeat(_Message):
    """``flowbus.agent.heartbeat``: an agent is alive and holds these runs (renews leases)."""

    agent: str
    queues: list[str]
    concurrency: int
    runs: list[HeldRun] = Field(default_factory=list)
    started: str
    hostname: str = ""
    pid: int = 0
    #: Tag concurrency slots its task runs hold: an orchestrator that restarted counts them
    #: again from here.
    slots: list[HeldSlots] = Field(default_factory=list)
    #: Runs cancelled while blocked in a call, whose threads have not returned yet (each takes
    #: one of the agent's ``concurrency`` until it does).
    abandoned: list[str] = Field(default_factory=list)


class HeartbeatReply(_Message):
    ok: Literal[True] = True
    #: Runs the agent listed that it no longer holds: it must stop them without a word.
    lost: list[str] = Field(default_factory=list)
    lease_seconds: float


class ReleaseRequest(_Message):
    """``flowbus.agent.release``: an agent gives up a run it cannot finish."""

    run_id: str
    attempt: int
    agent: str
    #: "crashed": the run's process died (the orchestrator records Crashed and requeues it when
    #: the flow has retries left); "handed_back": the agent is stopping (queued again as is);
    #: "cancelled": the agent stopped the run's process to cancel it (recorded Cancelled).
    outcome: Literal["crashed", "handed_back", "cancelled"]
    message: str = ""


class AgentCancel(_Message):
    """``flowbus.agent.<name>.cancel``: the orchestrator asks the holder to cancel a run."""

    run_id: str
    attempt: int


class Ok(_Message):
    ok: Literal[True] = True


class AgentInfo(_Message):
    name: str
    queues: list[str]
    concurrency: int
    runs: list[HeldRun]
    started: str
    last_heartbeat: str
    hostname: str
    pid: int
    alive: bool
    abandoned: list[str] = Field(default_factory=list)


class AgentList(_Message):
    ok: Literal[True] = True
    agents: list[AgentInfo]


# --- pause and resume ------------------------------------------------------------------------


class ResumeRequest(_Message):
    """``flowbus.api.resume``: take a Paused run up again, with the input its pause waits for."""

    run_id: str
    input: dict[str, Any] | None = None
    #: Who asks (an API token's name, ``cli:<user>``, ``nats:<user>``): recorded as the
    #: event's ``actor``. The requester's own statement (docs/security.md).
    actor: str | None = Field(default=None, max_length=200)


class ResumeReply(_Message):
    ok: Literal[True] = True
    run_id: str
    state: str


class RetryRequest(_Message):
    """``flowbus.api.retry``: queue a Failed, Crashed, Cancelled or TimedOut run of a deployment
    again, as a new attempt of the same run (its crash budget starts over)."""

    run_id: str
    #: Who asks (an API token's name, ``cli:<user>``, ``nats:<user>``): recorded as the
    #: event's ``actor``. The requester's own statement (docs/security.md).
    actor: str | None = Field(default=None, max_length=200)


class RecordedRequest(_Message):
    """``flowbus.api.recorded``: answer once the store holds the run's events up to ``seq``
    (or after ``wait`` seconds, with the head it has then)."""

    run_id: str
    seq: int = Field(ge=1)
    wait: float = Field(default=10.0, ge=0, le=60)
    #: The id of the event the client saw at ``seq``: the reply says the id the store holds
    #: there, so a client tells an event the store recorded from one anybody published.
    event_id: str | None = Field(default=None, max_length=100)


class RecordedReply(_Message):
    ok: Literal[True] = True
    #: The last sequence number the store holds for the run.
    head: int
    recorded: bool
    #: The id of the event the store holds at the asked ``seq`` (when ``event_id`` was sent).
    event_id: str | None = None


class WaitRequest(_Message):
    """``flowbus.api.wait``: answer once the store holds the run's final state (one it is not
    queued again from), or after ``wait`` seconds with ``final`` false."""

    run_id: str = Field(max_length=100)
    wait: float = Field(default=10.0, ge=0, le=60)


class WaitReply(_Message):
    ok: Literal[True] = True
    final: bool
    #: The run's state as the store holds it (final when ``final``).
    state_type: str
    state_name: str
    message: str | None = None
    #: A short repr of its result (Completed runs; ``flowbus runs result`` reads the result).
    result: str | None = None


class ReplayRequest(_Message):
    """``flowbus.agent.replay``: the task runs a run's earlier attempts completed, from the
    ``offset``-th on (a large run's table comes in pages)."""

    run_id: str
    offset: int = Field(default=0, ge=0)


class ReplayReply(_Message):
    """A page of replay entries (``flowbus.engine.replay.ReplayEntry`` as dicts); ``more`` says
    whether to ask again from ``offset + len(entries)``."""

    entries: list[dict[str, Any]]
    more: bool = False


# --- custom events ----------------------------------------------------------------------------


class CustomEvent(_Message):
    """An event a service publishes on ``flowbus.custom.<type>`` (JetStream, ``Nats-Msg-Id`` =
    ``id``): automations match it by type, resource and labels."""

    id: str = Field(min_length=1, max_length=200)
    type: str = Field(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", max_length=200)
    occurred: AwareDatetime
    resource: str | None = Field(default=None, max_length=2000)
    labels: dict[str, str] = Field(default_factory=dict)
    payload: dict[str, Any] = Field(default_factory=dict)
    #: Other resources the event concerns, each with its ``prefect.resource.id`` and ``role``.
    related: list[dict[str, str]] = Field(default_factory=list, max_length=100)
    #: The id of the event this one follows (Prefect's ordering hint).
    follows: str | None = Field(default=None, max_length=200)
