"""Submissions and releases, as pure decisions: whether a submission makes a run, and when a
queued run's request is published.

A submission makes a Scheduled run (or answers with the run its idempotency key made
before). Its request is published at once by whoever recorded it, except the runs only the
leader may release, which keeps the timers and counts: a run due later, a schedule's run
(the overlap policy applies when its time comes) and a run of a deployment with a
concurrency limit (a count of the deployment's runs under way).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flowbus.agents.decisions.model import (
    UNREAD,
    ArmTimer,
    Change,
    Decision,
    Effect,
    Facts,
    HandOver,
    NeedFacts,
    NewRun,
    Now,
    Publish,
    Release,
)
from flowbus.agents.run_entry import RunEntry
from flowbus.broker import protocol as p
from flowbus.engine.clock import canonical
from flowbus.engine.states import Pending, Scheduled, StateType
from flowbus.engine.store import DeploymentView

S = StateType
#: States in which a deployment's run counts as still running for the overlap policy.
OVERLAPPING = frozenset({S.PENDING, S.RUNNING, S.CANCELLING, S.PAUSED})
SubmitAnswer = p.SubmitReply | p.ErrorReply


def decide_submit(
    entry: RunEntry | None,
    request: p.SubmitRequest,
    run: NewRun,
    facts: Facts,
    now: Now,
) -> Decision[SubmitAnswer] | NeedFacts:
    """Make ``run`` (validated parameters, its id and name drawn) unless its idempotency key
    made a run before: then answer with that run, or refuse a key used with other parameters
    (the same key must mean the same request)."""
    if entry is not None:
        return _existing(run, entry.name, entry.queue, entry.parameters)
    if request.idempotency_key is not None:  # a random id cannot have been taken before
        if facts.view is UNREAD:
            return NeedFacts(view=True)
        if facts.view is not None:
            queue = facts.deployment.queue if facts.deployment else ""
            return _existing(run, facts.view.name, queue, facts.view.parameters)
    reply = p.SubmitReply(run_id=run.run_id, name=run.name, queue=run.queue, created=True)
    return Decision(reply, create=run)


def may_hand_over(run: NewRun, deployment: DeploymentView, wall: float) -> bool:
    """Whether a new run may go straight to an idle agent of this process, claimed in the
    submission's own commit: one the leader would not hold back (``released_by_leader``)."""
    due = run.scheduled_time.timestamp() if run.scheduled_time else 0.0
    return not _held_back_by_leader(due, run.schedule_id, deployment, wall)


def decide_submit_handed(
    entry: RunEntry | None,
    request: p.SubmitRequest,
    run: NewRun,
    facts: Facts,
    now: Now,
    agent: str,
) -> Decision[SubmitAnswer] | NeedFacts:
    """``decide_submit``, for a run an idle agent of this process takes at once: a new run is
    made and claimed in one commit (Scheduled, then Pending for ``agent``'s attempt 1) and
    handed over (``HandOver``); nothing is published to its queue. A submission that makes
    no run (its idempotency key made one before, or it is refused) is decided as always."""
    verdict = decide_submit(entry, request, run, facts, now)
    if isinstance(verdict, NeedFacts) or verdict.create is None:
        return verdict
    claim = Change(Pending(timestamp=now.iso), agent=agent, attempt=1, handed_over=True)
    handed = HandOver(agent, attempt=1, seq=2)  # the run's second event: its claim
    return Decision(verdict.reply, (claim,), (handed,), create=verdict.create)


def _existing(
    run: NewRun, name: str, queue: str, parameters: dict[str, Any]
) -> Decision[SubmitAnswer]:
    if parameters != run.parameters:
        return Decision(
            p.error(
                "idempotency_conflict",
                f"the idempotency key already made run {run.run_id} ({name}) with other parameters",
                {"run_id": run.run_id, "parameters": parameters},
            )
        )
    return Decision(p.SubmitReply(run_id=run.run_id, name=name, queue=queue, created=False))


def new_run(
    run_id: str,
    name: str,
    request: p.SubmitRequest,
    deployment: DeploymentView,
    parameters: dict[str, Any],
    now: Now,
) -> NewRun:
    """The run a submission makes: Scheduled, for its due time if it has one."""
    due = request.scheduled_time
    state = Scheduled(message=f"for {canonical(due)}" if due else None, timestamp=now.iso)
    return NewRun(
        run_id=run_id,
        flow_name=deployment.flow_name,
        name=name,
        deployment=deployment.name,
        queue=deployment.queue,
        parameters=parameters,
        tags=list(dict.fromkeys([*deployment.tags, *request.tags])),
        state=state,
        idempotency_key=request.idempotency_key,
        scheduled_time=due,
        schedule_id=request.schedule_id,
        triggered_by=request.triggered_by,
        actor=request.actor,
    )


def released_by_leader(entry: RunEntry, deployment: DeploymentView, wall: float) -> bool:
    """Whether a new run's request is published by the leader rather than by the orchestrator
    that recorded it: a run due later (a timer), a schedule's run (its overlap policy) and a
    run of a deployment with a concurrency limit (a count only the leader keeps) are."""
    return _held_back_by_leader(entry.due_at, entry.schedule_id, deployment, wall)


def _held_back_by_leader(
    due_at: float, schedule_id: int | None, deployment: DeploymentView, wall: float
) -> bool:
    return due_at > wall or schedule_id is not None or bool(deployment.concurrency_limit)


def after_submit(
    entry: RunEntry, deployment: DeploymentView, leading: bool, now: Now
) -> tuple[Effect, ...]:
    """What follows a run's creation once it is committed: the leader arms its timer or
    releases it; another orchestrator publishes it, unless only the leader may (it follows
    what the others write, and releases it then)."""
    if entry.published or entry.seq != 1:
        return ()
    if leading:
        return (ArmTimer(entry.due_at),) if entry.due_at > now.wall else (Release(),)
    if released_by_leader(entry, deployment, now.wall):
        return ()
    return (Publish(),)


def adopt(entry: RunEntry, deployment: DeploymentView | None, now: Now) -> tuple[Effect, ...]:
    """The leader learns of a run another orchestrator queued: it releases the runs only the
    leader may release (its writer left them unpublished); the others their writer
    published."""
    if deployment is None or not released_by_leader(entry, deployment, now.wall):
        return ()
    return (ArmTimer(entry.due_at),) if entry.due_at > now.wall else (Release(),)


def going(entry: RunEntry, entries: Iterable[RunEntry]) -> list[RunEntry]:
    """The deployment's other runs that are queued (published) or under way."""
    return [
        other
        for other in entries
        if other.deployment == entry.deployment
        and other.run_id != entry.run_id
        and (other.state in OVERLAPPING or (other.state is S.SCHEDULED and other.published))
    ]


def limited_release(
    entry: RunEntry, deployment: DeploymentView, going_now: int
) -> Publish | str | None:
    """A run of a deployment with a concurrency limit, due now: publish it while the
    deployment has room; else cancel it (collision strategy ``cancel``: the message says
    why) or let it wait (None) until a run of the deployment ends."""
    limit = deployment.concurrency_limit
    if not limit or going_now < limit:
        return Publish()
    if deployment.collision == "cancel":
        return (
            f"{deployment.name} already has {going_now} runs going (concurrency limit {limit}, "
            "collision strategy cancel)"
        )
    return None


def schedule_refusal(
    entry: RunEntry, deployment: DeploymentView | None, entries: Iterable[RunEntry]
) -> tuple[str | None, list[str]]:
    """Whether a schedule's run may start now its time has come: (why not, or None; the runs
    of its deployment to cancel first, under the overlap policy ``cancel``)."""
    if deployment is None:
        return f"deployment {entry.deployment} is gone", []
    active = {s["id"] for s in deployment.schedules if s.get("active", True)}
    if entry.schedule_id not in active:
        return f"schedule {entry.schedule_id} of {deployment.name} is paused or removed", []
    running = [
        other
        for other in entries
        if other.deployment == entry.deployment
        and other.run_id != entry.run_id
        and other.state in OVERLAPPING
    ]
    if not running or deployment.overlap == "allow":
        return None, []
    if deployment.overlap == "skip":
        first = running[0].name
        return (
            f"skipped: run {first} of {deployment.name} is still running (overlap policy skip)",
            [],
        )
    return None, [other.run_id for other in running]


def held_back(name: str, entries: Iterable[RunEntry], wall: float) -> list[RunEntry]:
    """The runs of deployment ``name`` its concurrency limit holds back (due, committed,
    unpublished), oldest first: offered the room when one of its runs ends."""
    return sorted(
        (
            e
            for e in entries
            if e.deployment == name
            and e.state is S.SCHEDULED
            and e.committed
            and not e.published
            and e.due_at <= wall
        ),
        key=lambda e: e.queued_at,
    )


__all__ = [
    "OVERLAPPING",
    "SubmitAnswer",
    "adopt",
    "after_submit",
    "decide_submit",
    "decide_submit_handed",
    "going",
    "held_back",
    "limited_release",
    "may_hand_over",
    "new_run",
    "released_by_leader",
    "schedule_refusal",
]
