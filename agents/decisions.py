"""The orchestrator's decisions that need no I/O, as pure functions of a run's entry and the
time: what the janitor does with a run, whether a claim is refused, who publishes a new run's
request. The services call them and do the I/O; the tests check them against tables
(tests/unit/test_decisions.py)."""

from __future__ import annotations

import enum

from flowbus.agents.ledger import RunEntry
from flowbus.broker import protocol as p
from flowbus.engine.states import StateType
from flowbus.engine.store import DeploymentView

S = StateType


class Sweep(enum.Enum):
    """What the leader's janitor does with one run on one sweep."""

    EXPIRE = "expire"  # its lease ran out: Crashed (queued again if retries are left)
    EXPIRE_PAUSE = "expire_pause"  # paused past its timeout: Failed
    ARM = "arm"  # made for later: a timer releases it
    RELEASE = "release"  # due and unpublished: publish (after its deployment's policies)
    REPUBLISH = "republish"  # queued by another orchestrator that may have died first
    MARK_LATE = "mark_late"  # queued and unclaimed for too long


def sweep_actions(
    entry: RunEntry, now: float, wall: float, late_after: float, foreign_grace: float
) -> list[Sweep]:
    """The janitor's actions for ``entry`` at monotonic ``now`` and epoch ``wall``, in order."""
    if not entry.committed:
        return []  # its submission is still being written
    actions: list[Sweep] = []
    scheduled = entry.state is S.SCHEDULED
    if entry.lease_expired(now):
        actions.append(Sweep.EXPIRE)
    elif entry.state is S.PAUSED and entry.pause_deadline < wall:
        actions.append(Sweep.EXPIRE_PAUSE)
    elif scheduled and not entry.published:
        actions.append(Sweep.ARM if entry.due_at > wall else Sweep.RELEASE)
    elif scheduled and entry.foreign and wall - entry.queued_at > foreign_grace:
        actions.append(Sweep.REPUBLISH)
    if scheduled and entry.state_name != "Late" and wall - entry.queued_at > late_after:
        actions.append(Sweep.MARK_LATE)
    return actions


def audit_due(believed: int, held: int) -> bool:
    """Whether a queue's requests must be read: the leader believes ``believed`` of its runs are
    Scheduled with their request published, and the queue's stream holds ``held`` requests.
    Requests of runs under way or copies only add to ``held``: fewer means one went missing."""
    return held < believed


def lost_requests(
    believed: list[RunEntry], present: set[str], wall: float, grace: float
) -> list[RunEntry]:
    """The runs of ``believed`` (Scheduled, their request published) whose request is not among
    the ``present`` run ids, queued more than ``grace`` seconds before epoch ``wall`` (a
    request published just now may not have reached the stream yet)."""
    return [
        entry
        for entry in believed
        if entry.run_id not in present
        and entry.state is S.SCHEDULED
        and entry.published
        and wall - entry.queued_at > grace
    ]


def released_by_leader(entry: RunEntry, deployment: DeploymentView, now: float) -> bool:
    """Whether a new run's request is published by the leader rather than by the orchestrator
    that recorded it: a run due later (a timer), a schedule's run (its overlap policy) and a
    run of a deployment with a concurrency limit (a count only the leader keeps) are."""
    return entry.due_at > now or entry.schedule_id is not None or bool(deployment.concurrency_limit)


def held_by(entry: RunEntry, agent: str, attempt: int) -> bool:
    """Whether ``agent``'s ``attempt`` is the run's open attempt."""
    return entry.open and entry.agent == agent and entry.attempt == attempt


def awaits_start(entry: RunEntry) -> bool:
    """Whether the run is granted to an agent and still Pending: its attempt may not have
    started, and the agent may not even know it holds the run (the grant's answer was lost).
    The claims service asks the events stream whether a later state exists before it relies
    on this (the store may lag: a run the agent has finished can still look Pending there)."""
    return entry.held and entry.state is S.PENDING


def grant_again(entry: RunEntry, agent: str) -> bool:
    """Whether ``agent``'s claim is answered with the grant it was already given: the run
    awaits its start by that very agent, which asks again because the first answer never
    reached it (its orchestrator died after recording the claim, or answered too late). An
    agent never claims a run it is running."""
    return awaits_start(entry) and entry.agent == agent


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
