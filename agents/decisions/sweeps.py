"""The leader's sweeps, as pure decisions: what the janitor does with each run it follows,
and which published requests the queue audit finds missing from their queues."""

from __future__ import annotations

import enum

from flowbus.agents.run_entry import RunEntry
from flowbus.engine.states import StateType

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


__all__ = ["Sweep", "audit_due", "lost_requests", "sweep_actions"]
