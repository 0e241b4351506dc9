"""What an orchestrator knows about one run of a deployment (``RunEntry``), and how the run's
events make it: one builder from ``flow_run.created`` and one fold of ``flow_run.state``,
shared by the ledger (reading a run from the store, following other orchestrators' commits,
admitting agents' events) and by the decisions (which simulate the changes they propose).

Pure: no I/O; ``now`` is an argument.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from flowbus.agents.decisions.model import Change, NewRun
from flowbus.engine.clock import canonical
from flowbus.engine.errors import TransitionRejected
from flowbus.engine.event_types import FLOW_RUN_STATES, EventType
from flowbus.engine.events import FlowRunCreated, FlowRunStateChanged, StoredEventModel
from flowbus.engine.records import EventRecord, make_record, state_dict
from flowbus.engine.states import StateType
from flowbus.engine.transitions import decide

S = StateType
#: States in which an agent holds the run (a Paused run is held by nobody: it waits to be
#: resumed, and no lease runs out meanwhile).
HELD = frozenset({S.PENDING, S.RUNNING, S.CANCELLING})


@dataclass(slots=True)
class RunEntry:
    """What the orchestrator knows about one run of a deployment."""

    run_id: str
    name: str
    deployment: str
    queue: str
    state: StateType
    state_name: str
    seq: int
    parameters: dict[str, Any]
    tags: list[str]
    #: When the run was (re)queued, epoch seconds: the clock for Late.
    queued_at: float
    #: The sequence number of the event that (re)queued it: its run request's message id.
    queued_seq: int = 1
    #: The ``queued_seq`` whose request is known to be in the queue (the outbox's fact; see
    #: ``published``). Queuing the run again makes it stale by itself.
    published_seq: int = 0
    attempt: int = 0
    agent: str | None = None
    #: Whether events of ``attempt`` are admitted (closed by a crash or a fallback cancel).
    open: bool = False
    #: Monotonic seconds until which its holder's lease lasts (``extend_lease``).
    lease_until: float = 0.0
    #: Its deployment's crash-recovery budget (``crash_retries``).
    crash_retries: int = 0
    crashes: int = 0
    finished_at: float | None = None
    #: Epoch seconds before which its request is not published (a schedule's time); 0: at once.
    due_at: float = 0.0
    #: The deployment schedule that made it, if one did.
    schedule_id: int | None = None
    #: Inputs of its resumed pauses, by pause key (the agent that runs it again gets them).
    resumes: dict[str, Any] = field(default_factory=dict)
    #: While Paused: which pause, until when (epoch seconds), and the input it waits for.
    pause_key: str | None = None
    pause_deadline: float = 0.0
    pause_input_schema: dict[str, Any] | None = None
    #: When this copy was read from the store or last changed here (monotonic).
    touched: float = field(default_factory=time.monotonic)
    #: Queued by another orchestrator, which published its request (or died first): the
    #: leader publishes it once more if it is still unclaimed after a grace period.
    foreign: bool = False
    #: False while the event that created it is not yet committed: nothing may publish its
    #: request (another orchestrator, reading the store, would not find the run).
    committed: bool = True
    #: Its open attempt was handed to an agent at submit (``Change.handed_over``): no request
    #: of it is in its queue. Known only to the orchestrator that decided it (a copy read
    #: from the store says False: the queue audit then finds the request missing).
    handed_over: bool = False

    @property
    def held(self) -> bool:
        return self.open and self.agent is not None and self.state in HELD

    @property
    def published(self) -> bool:
        """Whether the request of its current queuing is known to be in its queue."""
        return self.published_seq == self.queued_seq

    def lease_expired(self, now: float) -> bool:
        return self.held and self.lease_until < now

    def mark_published(self, queued_seq: int | None = None) -> None:
        """The request of ``queued_seq`` (by default the current queuing) is in the queue."""
        self.published_seq = max(self.published_seq, queued_seq or self.queued_seq)

    def mark_unpublished(self) -> None:
        """Not known to be in the queue (a publish to try again)."""
        self.published_seq = 0

    def extend_lease(self, until: float) -> None:
        """Its holder's lease lasts at least until ``until`` (monotonic seconds)."""
        self.lease_until = max(self.lease_until, until)

    def copy(self) -> RunEntry:
        """A copy to simulate changes on (its dicts copied too)."""
        clone = copy.copy(self)
        clone.resumes = dict(self.resumes)
        return clone


class _Stored(Protocol):
    """A stored event (``StoredEvent``, ``EventRecord``): its place, type and model."""

    @property
    def seq(self) -> int: ...
    @property
    def type(self) -> str: ...
    def typed(self) -> StoredEventModel: ...


def entry_from_created(event: FlowRunCreated) -> RunEntry | None:
    """The entry a run starts with; None for a run that is not a deployment's."""
    if not event.deployment or not event.queue:
        return None
    due = event.scheduled_time.timestamp() if event.scheduled_time else 0.0
    return RunEntry(
        run_id=str(event.stream_id),
        name=event.name,
        deployment=event.deployment,
        queue=event.queue,
        state=event.state.type,
        state_name=event.state.name,
        seq=event.seq,
        parameters=dict(event.parameters),
        tags=list(event.tags),
        queued_at=due or event.state.timestamp.timestamp(),
        queued_seq=event.seq,
        due_at=due,
        schedule_id=event.schedule_id,
    )


def apply_state(entry: RunEntry, event: FlowRunStateChanged, now: float) -> None:
    """Fold one state event of the run (the next in its stream) into ``entry``; ``now`` is
    monotonic seconds."""
    state = event.state
    entry.seq = event.seq
    entry.state = state.type
    entry.state_name = state.name
    if event.attempt is not None:  # a claim: a new attempt opens, the old one is fenced
        entry.attempt = event.attempt
        entry.agent = event.agent
        entry.open = True
        entry.handed_over = False  # a claim from the queue (``apply_change`` says otherwise)
    if event.retried:  # queued again on request: its crash budget starts over
        entry.crashes = 0
    if state.type is S.CRASHED:
        entry.crashes += 1
    if state.type is S.CRASHED or event.closes_attempt is not None:
        entry.open = False  # fenced: the attempt's late events are refused
    if state.type is S.PAUSED:
        entry.pause_key = event.pause_key
        timeout_at = event.pause_timeout_at
        entry.pause_deadline = timeout_at.timestamp() if timeout_at else float("inf")
        entry.pause_input_schema = event.input_schema
    if event.pause_key and "resume_input" in event.model_fields_set:  # a pause's resume
        entry.resumes[event.pause_key] = event.resume_input
    if state.type is S.SCHEDULED and state.name != "Late":
        entry.queued_seq = event.seq
        entry.queued_at = state.timestamp.timestamp()
    entry.finished_at = now if state.type.is_terminal else None


def fold(events: Iterable[_Stored]) -> RunEntry | None:
    """Rebuild a run's entry from its stream; None for a run that is not a deployment's."""
    entry: RunEntry | None = None
    for stored in events:
        if entry is not None:
            entry.seq = stored.seq  # task runs and logs move the head too
        if stored.type not in FLOW_RUN_STATES:
            continue
        event = stored.typed()
        if isinstance(event, FlowRunCreated):
            entry = entry_from_created(event)
            if entry is None:
                return None
        elif entry is not None and isinstance(event, FlowRunStateChanged):
            apply_state(entry, event, time.monotonic())
    return entry


def created_record(run: NewRun) -> EventRecord:
    """The ``flow_run.created`` event of a run a submission makes. Its model is parsed only when
    asked for: the decision tests check every record a decision makes against it."""
    fields = {
        "flow_name": run.flow_name,
        "name": run.name,
        "flow_version": None,
        "parameters": run.parameters,
        "tags": run.tags,
        "parent_run_id": None,
        "parent_task_run_id": None,
        "deployment": run.deployment,
        "queue": run.queue,
        "idempotency_key": run.idempotency_key,
        "scheduled_time": canonical(run.scheduled_time) if run.scheduled_time else None,
        "schedule_id": run.schedule_id,
        "triggered_by": run.triggered_by,
        "state": state_dict(run.state),
    }
    if run.actor is not None:
        fields["actor"] = run.actor
    record = make_record(run.run_id, 1, EventType.FLOW_RUN_CREATED, fields,
                         run.state.timestamp_iso)  # fmt: skip
    return record


def change_record(entry: RunEntry, change: Change) -> EventRecord:
    """The event of ``change``: the run's next (``entry.seq + 1``). Its model is parsed only
    when asked for: the decision tests check every record a decision makes against it."""
    fields: dict[str, Any] = {"state": state_dict(change.state), "result": None}
    if change.agent is not None:
        fields["agent"] = change.agent
    if change.attempt is not None:
        fields["attempt"] = change.attempt
    if change.resume is not None:
        fields["pause_key"] = change.resume.pause_key
        fields["resume_input"] = change.resume.input
    if change.retried:
        fields["retried"] = True
    if change.close:
        fields["closes_attempt"] = entry.attempt
    if change.leader_term is not None:
        fields["leader_term"] = change.leader_term
    if change.actor is not None:
        fields["actor"] = change.actor
    record = make_record(entry.run_id, entry.seq + 1, EventType.FLOW_RUN_STATE, fields,
                         change.state.timestamp_iso)  # fmt: skip
    return record


def apply_change(entry: RunEntry, change: Change, now: float) -> EventRecord:
    """Apply ``change`` to ``entry`` (checked by the rule table: an illegal one raises
    ``TransitionRejected`` and changes nothing); returns its event."""
    verdict = decide(entry.state, change.state.type)
    if not verdict:
        raise TransitionRejected(f"run {entry.run_id}: {verdict.reason}")
    record = change_record(entry, change)
    event = record.typed()
    assert isinstance(event, FlowRunStateChanged)
    apply_state(entry, event, now)
    entry.touched = now
    if change.attempt is not None:
        entry.handed_over = change.handed_over
    if change.still_queued:  # handed back: its agent puts the request back in the queue
        entry.mark_published()
    return record


def after(entry: RunEntry, changes: Iterable[Change], now: float) -> RunEntry:
    """What ``entry`` becomes once ``changes`` are applied (on a copy; ``entry`` is left as
    it was): a decision sees the run as its own changes leave it."""
    simulated = entry.copy()
    for change in changes:
        apply_change(simulated, change, now)
    return simulated


def held_by(entry: RunEntry, agent: str, attempt: int) -> bool:
    """Whether ``agent``'s ``attempt`` is the run's open attempt."""
    return entry.open and entry.agent == agent and entry.attempt == attempt


def holds(entry: RunEntry, attempt: int) -> bool:
    """Whether ``attempt`` (of whichever agent) is the run's open attempt."""
    return entry.open and entry.attempt == attempt


__all__ = [
    "HELD",
    "RunEntry",
    "after",
    "apply_change",
    "apply_state",
    "change_record",
    "created_record",
    "entry_from_created",
    "fold",
    "held_by",
    "holds",
]
