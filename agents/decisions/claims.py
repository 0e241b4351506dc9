"""Claims, hand-backs, heartbeats, leases and the crash budget, as pure decisions.

A claim opens attempt ``n + 1`` of a Scheduled run (fenced by its number); a heartbeat renews
the leases of the attempts its agent holds; a run whose lease ran out is Crashed and, while
its deployment's crash budget lasts, queued again (AwaitingRetry); an agent gives a run back
(its process died, it was cancelled, or the agent is stopping).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from flowbus.agents.decisions.model import (
    UNREAD,
    Change,
    Decision,
    Effect,
    Facts,
    NeedFacts,
    NoteCrash,
    Now,
    Publish,
    RenewLease,
    StreamHead,
)
from flowbus.agents.run_entry import RunEntry, after, held_by
from flowbus.broker import protocol as p
from flowbus.engine.states import (
    AwaitingRetry,
    Cancelled,
    Cancelling,
    Crashed,
    Pending,
    Scheduled,
    StateType,
)
from flowbus.engine.store import DeploymentView

S = StateType
ClaimReply = p.ClaimGrant | p.ClaimRefusal


def crash(entry: RunEntry, message: str, now: Now, term: int | None = None) -> list[Change]:
    """Fence the run's attempt and end it Crashed; queued again (AwaitingRetry) while the
    deployment's crash budget lasts. A run being cancelled when its agent died ends
    Cancelled instead."""
    if entry.state is S.CANCELLING:
        return [Change(Cancelled(message=message, timestamp=now.iso), close=True,
                       leader_term=term)]  # fmt: skip
    changes = [Change(Crashed(message=message, timestamp=now.iso), close=True, leader_term=term)]
    crashes = entry.crashes + 1  # counting this one
    if crashes <= entry.crash_retries:
        again = f"{message}; recovering: queued again (crash {crashes} of {entry.crash_retries})"
        changes.append(Change(AwaitingRetry(message=again, timestamp=now.iso)))
    return changes


def crash_effects(entry: RunEntry, changes: list[Change], message: str) -> list[Effect]:
    """What follows a crash once recorded: it is noted, and a run queued again is published."""
    requeued = len(changes) > 1
    effects: list[Effect] = []
    if entry.state is not S.CANCELLING:
        effects.append(NoteCrash(message, requeued))
    if requeued:
        effects.append(Publish())
    return effects


def awaits_start(entry: RunEntry) -> bool:
    """Whether the run is granted to an agent and still Pending: its attempt may not have
    started, and the agent may not even know it holds the run (the grant's answer was lost).
    A claim asks the events stream whether a later state exists before it relies on this
    (the store may lag: a run the agent has finished can still look Pending there)."""
    return entry.held and entry.state is S.PENDING


def grant_again(entry: RunEntry, agent: str) -> bool:
    """Whether ``agent``'s claim is answered with the grant it was already given: the run
    awaits its start by that very agent, which asks again because the first answer never
    reached it (its orchestrator died after recording the claim, or answered too late). An
    agent never claims a run it is running."""
    return awaits_start(entry) and entry.agent == agent


def started(entry: RunEntry, head: StreamHead | None) -> bool:
    """Whether the events stream holds a state of the run after its claim (``head`` None:
    none there). When the stream cannot say, the run counts as started: it is never granted
    again on a guess."""
    if head is None:
        return False
    return not head.readable or head.seq > entry.seq


def claim_refusal(entry: RunEntry, unstarted: bool = False) -> p.ClaimRefusal | None:
    """Why a claim of the run is refused now, or None when it may be granted.

    ``unstarted``: the run awaits its start by another agent, and the events stream holds no
    state after the claim. That agent may never have heard its grant, and then needs this
    very request back to claim again: the refusal "starting" tells the claimant to put the
    request back (nak it) rather than ack it away."""
    if entry.state is S.CANCELLED or entry.state is S.CANCELLING:
        return p.ClaimRefusal(reason="cancelled", message=f"run is {entry.state_name}")
    if entry.state.is_terminal:
        return p.ClaimRefusal(reason="finished", message=f"run is {entry.state_name}")
    if entry.held and unstarted:
        return p.ClaimRefusal(
            reason="starting",
            message=f"run is granted to agent {entry.agent} (attempt {entry.attempt}), "
            "which has not started it",
        )
    if entry.held:
        return p.ClaimRefusal(
            reason="leased", message=f"run is held by agent {entry.agent} (attempt {entry.attempt})"
        )
    if entry.state is not S.SCHEDULED:
        return p.ClaimRefusal(reason="illegal", message=f"run is {entry.state_name}")
    return None


def grant(
    entry: RunEntry, attempt: int, seq: int, deployment: DeploymentView, lease_seconds: float
) -> p.ClaimGrant:
    """What an agent that holds attempt ``attempt`` gets: the run, from its claim's event
    (``seq``) on."""
    return p.ClaimGrant(
        run_id=entry.run_id,
        attempt=attempt,
        seq=seq,
        name=entry.name,
        flow_name=deployment.flow_name,
        deployment=deployment.name,
        entrypoint=deployment.entrypoint,
        working_dir=deployment.working_dir,
        parameters=entry.parameters,
        tags=entry.tags,
        lease_seconds=lease_seconds,
        resumes=entry.resumes,
        scheduled_time=datetime.fromtimestamp(entry.due_at, UTC) if entry.due_at else None,
    )


def decide_claim(
    entry: RunEntry | None, request: p.ClaimRequest, facts: Facts, now: Now, lease_seconds: float
) -> Decision[ClaimReply] | NeedFacts:
    """Grant the claim (Pending, attempt n + 1), grant it again to an agent that never heard
    its grant, or refuse it; a run whose holder's lease ran out is crashed first."""
    if entry is None:
        return Decision(p.ClaimRefusal(reason="unknown", message="no such run of a deployment"))
    if request.queue is not None and request.queue != entry.queue:
        message = f"run is of queue {entry.queue!r}, not {request.queue!r}: not this agent's"
        return Decision(p.ClaimRefusal(reason="illegal", message=message))
    changes: list[Change] = []
    effects: list[Effect] = []
    unstarted = False
    if entry.lease_expired(now.mono):
        message = f"agent {entry.agent} stopped renewing its lease"
        changes = crash(entry, message, now)
        effects = crash_effects(entry, changes, message)
    elif awaits_start(entry):
        if facts.stream_head is UNREAD:
            return NeedFacts(stream_head=True)
        unstarted = not started(entry, facts.stream_head)
        if unstarted and grant_again(entry, request.agent):
            if facts.deployment is UNREAD:
                return NeedFacts(deployment=True)
            if facts.deployment is not None:  # the claim's Pending is the run's last event
                again = grant(entry, entry.attempt, entry.seq, facts.deployment, lease_seconds)
                return Decision(again)
    run = after(entry, changes, now.mono) if changes else entry
    refusal = claim_refusal(run, unstarted)
    if refusal is None and facts.deployment is UNREAD:
        return NeedFacts(deployment=True)
    if refusal is None and facts.deployment is None:
        refusal = p.ClaimRefusal(reason="unknown", message="its deployment is gone")
    if refusal is not None:
        return Decision(refusal, tuple(changes), tuple(effects))
    assert facts.deployment is not None
    attempt = run.attempt + 1
    changes.append(Change(Pending(timestamp=now.iso), agent=request.agent, attempt=attempt))
    granted = grant(run, attempt, run.seq + 1, facts.deployment, lease_seconds)
    # A crash queued it again and this claim takes it at once: nothing to publish.
    effects = [effect for effect in effects if not isinstance(effect, Publish)]
    return Decision(granted, tuple(changes), tuple(effects))


def decide_release(entry: RunEntry | None, request: p.ReleaseRequest, now: Now) -> Decision[p.Ok]:
    """An agent gives its attempt up: its process died (crashed), it stopped the run to
    cancel it (cancelled), or it is stopping (handed back: queued again as it is)."""
    if (
        entry is None
        or not held_by(entry, request.agent, request.attempt)
        or entry.state.is_terminal
    ):
        return Decision(p.Ok())  # no longer that agent's: nothing to give up
    if request.outcome == "crashed":
        message = request.message or "its process died"
        changes = crash(entry, message, now)
        return Decision(p.Ok(), tuple(changes), tuple(crash_effects(entry, changes, message)))
    if request.outcome == "cancelled":
        message = request.message or "cancelled on request"
        cancelled = [Change(Cancelled(message=message, timestamp=now.iso), close=True)]
        if entry.state is not S.CANCELLING:
            cancelled.insert(0, Change(Cancelling(message=message, timestamp=now.iso)))
        return Decision(p.Ok(), tuple(cancelled))
    message = request.message or f"handed back by agent {request.agent}"
    # A run handed over at its submission has no request in its queue to put back: one is
    # published.
    queued = not entry.handed_over
    back = Change(Scheduled(message=message, timestamp=now.iso), close=True, still_queued=queued)
    return Decision(p.Ok(), (back,), () if queued else (Publish(),))


def decide_expiry(entry: RunEntry | None, facts: Facts, now: Now) -> Decision[bool] | NeedFacts:
    """A run whose lease ran out is Crashed (queued again within its budget), unless its
    agent published states the store does not hold yet: then the recorder is behind (just
    after an election, say), the agent is alive, and the lease is renewed instead."""
    if entry is None or not entry.lease_expired(now.mono):
        return Decision(False)
    if facts.stream_head is UNREAD:
        return NeedFacts(stream_head=True)
    if ahead_of_store(entry, facts.stream_head):
        return Decision(False, effects=(RenewLease(),))
    message = f"agent {entry.agent} stopped renewing its lease"
    changes = crash(entry, message, now, facts.term)
    effects = [
        NoteCrash(message, len(changes) > 1, lease_expired=True) if isinstance(e, NoteCrash) else e
        for e in crash_effects(entry, changes, message)
    ]
    return Decision(True, tuple(changes), tuple(effects))


def ahead_of_store(entry: RunEntry, head: StreamHead | None) -> bool:
    """Whether the events stream holds a state of the run's open attempt that the store (as
    ``entry`` shows it) does not have yet."""
    if head is None or not head.readable:
        return False  # none there, or NATS away: the store's view stands
    return head.attempt == entry.attempt and head.seq > entry.seq


@dataclass(frozen=True, slots=True)
class HeartbeatVerdict:
    """What a heartbeat does: leases renewed, runs the agent is told it lost, runs to read
    again in the background (the leader's copy does not show them held by that attempt),
    and the answer (None: a follower does not answer)."""

    renew: tuple[str, ...]
    lost: tuple[str, ...]
    check: tuple[p.HeldRun, ...]
    reply: p.HeartbeatReply | None


def decide_heartbeat(
    beat: p.Heartbeat,
    entries: Mapping[str, RunEntry],
    known_lost: frozenset[tuple[str, str, int]],
    checking: frozenset[str],
    leading: bool,
    lease_seconds: float,
) -> HeartbeatVerdict:
    """Renew the leases of the runs the agent holds; the leader answers with the runs the
    store says it no longer holds (``known_lost``: found by an earlier check). Nothing here
    waits for the store: a run the copy does not show held by that attempt is checked in the
    background and named lost in a later answer only if the store agrees."""
    renew: list[str] = []
    lost: list[str] = []
    check: list[p.HeldRun] = []
    for held in beat.runs:
        entry = entries.get(held.run_id)
        if entry is not None and held_by(entry, beat.agent, held.attempt):
            renew.append(held.run_id)
        elif (beat.agent, held.run_id, held.attempt) in known_lost:
            lost.append(held.run_id)
        elif leading and held.run_id not in checking:
            check.append(held)
    reply = p.HeartbeatReply(lost=lost, lease_seconds=lease_seconds) if leading else None
    return HeartbeatVerdict(tuple(renew), tuple(lost), tuple(check), reply)


__all__ = [
    "ClaimReply",
    "HeartbeatVerdict",
    "ahead_of_store",
    "awaits_start",
    "claim_refusal",
    "crash",
    "decide_claim",
    "decide_expiry",
    "decide_heartbeat",
    "decide_release",
    "grant",
    "grant_again",
    "started",
]
