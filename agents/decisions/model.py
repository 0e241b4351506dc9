"""The shape of every orchestrator decision: facts in, a ``Decision`` out.

    decide(entry, request, facts, now) -> Decision | NeedFacts

A decision is a pure function of the run's entry (as the ledger holds it, under the run's
lock), the request, the facts gathered before the lock (deployment settings, the newest
state on the events stream, store reads) and the time. It returns what to record
(``changes``: the run's next states, checked by the rule table), what to answer (``reply``:
a protocol model) and what to do once the changes are committed (``effects``: publish the
run's request, ask an agent, arm a timer, ...). When it needs a fact nobody gathered, it
says which (``NeedFacts``): the executor reads it outside the run's lock and decides again.
One executor (``agents/orchestrator/executor.py``) turns decisions into I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from flowbus.engine.clock import canonical
from flowbus.engine.states import State
from flowbus.engine.store import DeploymentView, FlowRunView

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Now:
    """The time a decision is taken at: monotonic seconds (leases) and epoch seconds (due
    times, Late, pause timeouts)."""

    mono: float
    wall: float

    @property
    def iso(self) -> str:
        """The wall time as a state's timestamp."""
        return canonical(datetime.fromtimestamp(self.wall, UTC))


@dataclass(frozen=True, slots=True)
class Resume:
    """A pause's resume: which pause, and the (validated) input it gets."""

    pause_key: str | None
    input: Any


@dataclass(frozen=True, slots=True)
class Change:
    """One state change to record: the event moving the run to ``state`` (its next in the
    stream). The optional fields are the event's own (``FlowRunStateChanged``)."""

    state: State
    #: The change also fences the run's open attempt (``closes_attempt``).
    close: bool = False
    #: A claim: the agent that holds the run and the attempt that opens.
    agent: str | None = None
    attempt: int | None = None
    resume: Resume | None = None
    #: Queued again on request (``runs retry``): the crash budget starts over.
    retried: bool = False
    #: A decision only the leader takes carries its term.
    leader_term: int | None = None
    #: A hand-back: the run's request stays in its queue (the agent puts it back).
    still_queued: bool = False
    #: A claim made for an agent of this process at submit (``HandOver``): no request of
    #: the run is in its queue, so a hand-back must publish one.
    handed_over: bool = False
    #: Who asked for it (a cancel, a resume, a retry): recorded on its event.
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to create: the fields of its ``flow_run.created`` event (Scheduled)."""

    run_id: str
    flow_name: str
    name: str
    deployment: str
    queue: str
    parameters: dict[str, Any]
    tags: list[str]
    state: State
    idempotency_key: str | None = None
    #: When it is due (a schedule's time), if later than now.
    scheduled_time: datetime | None = None
    schedule_id: int | None = None
    triggered_by: dict[str, str] | None = None
    #: Who submitted it.
    actor: str | None = None


# --- effects: what happens once the changes are committed ---------------------------------


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish the run's request to its queue (the outbox), unless it is published already."""


@dataclass(frozen=True, slots=True)
class Release:
    """Publish the run's request once its deployment's policies allow (the leader's
    release: a schedule's overlap policy, the deployment's concurrency limit)."""


@dataclass(frozen=True, slots=True)
class ArmTimer:
    """Release the run when its time comes (epoch seconds)."""

    due_at: float


@dataclass(frozen=True, slots=True)
class AskAgentToCancel:
    """Ask the holder to cancel the run; if it cannot be reached, cancel without it."""

    agent: str
    attempt: int


@dataclass(frozen=True, slots=True)
class RenewLease:
    """The lease is extended by one lease from now (its agent is alive after all)."""


@dataclass(frozen=True, slots=True)
class NoteCrash:
    """A run crashed (logged and counted): why, and whether it was queued again."""

    reason: str
    requeued: bool
    lease_expired: bool = False


@dataclass(frozen=True, slots=True)
class HandOver:
    """Give the run, claimed at its submission, to the agent of this process that holds it
    (attempt 1, its claim's event at ``seq``): the grant goes to it in memory, not through
    the queue."""

    agent: str
    attempt: int
    seq: int


Effect = Publish | Release | ArmTimer | AskAgentToCancel | RenewLease | NoteCrash | HandOver


@dataclass(frozen=True, slots=True)
class Decision(Generic[R]):
    """What to record, what to answer, what to do after the commit."""

    reply: R
    changes: tuple[Change, ...] = ()
    effects: tuple[Effect, ...] = ()
    #: A run this decision creates (a submission), recorded before ``changes``.
    create: NewRun | None = None


# --- facts: what a decision may need beyond the run's entry --------------------------------


@dataclass(frozen=True, slots=True)
class StreamHead:
    """The newest state of a run on the events stream (its sequence number, and the attempt
    of the agent that published it, if an agent did); ``readable`` False when the stream
    could not be read (NATS away: each decision says what that means for it)."""

    seq: int
    attempt: int | None
    readable: bool = True


#: The events stream could not say.
UNREADABLE = StreamHead(0, None, readable=False)


class _Unread:
    """A fact nobody read yet (distinct from a fact read as None)."""

    def __repr__(self) -> str:
        return "UNREAD"


UNREAD: Any = _Unread()


@dataclass(frozen=True, slots=True)
class Facts:
    """What was read before the run's lock: anything left ``UNREAD`` a decision may ask for."""

    #: The run's deployment (None: gone).
    deployment: DeploymentView | None = UNREAD
    #: The newest state of the run on the events stream (None: none there, or unreadable
    #: for ``started``'s purposes: see ``decisions.claims``).
    stream_head: StreamHead | None = UNREAD
    #: The run as the store's projection shows it (for runs the ledger does not follow).
    view: FlowRunView | None = UNREAD
    #: Whether this orchestrator leads now.
    leading: bool = False
    #: The leader's term (written into its own decisions).
    term: int | None = None

    def with_(self, **read: Any) -> Facts:
        """These facts and the ones just read."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.update(read)
        return Facts(**values)


@dataclass(frozen=True, slots=True)
class NeedFacts:
    """The decision needs these facts read first (outside the run's lock)."""

    stream_head: bool = False
    view: bool = False
    deployment: bool = False


__all__ = [
    "UNREAD",
    "UNREADABLE",
    "ArmTimer",
    "AskAgentToCancel",
    "Change",
    "Decision",
    "Effect",
    "Facts",
    "NeedFacts",
    "NewRun",
    "NoteCrash",
    "Now",
    "Publish",
    "Release",
    "RenewLease",
    "Resume",
    "StreamHead",
]
