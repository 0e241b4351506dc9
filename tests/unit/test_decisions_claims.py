"""Claims, hand-backs, heartbeats, lease expiry and the crash budget, decided against tables
of runs in every state: no NATS, no store."""

from __future__ import annotations

from typing import Any

import pytest

from flowbus.agents.decisions.claims import (
    decide_claim,
    decide_expiry,
    decide_heartbeat,
    decide_release,
)
from flowbus.agents.decisions.model import (
    UNREAD,
    UNREADABLE,
    Facts,
    NeedFacts,
    NoteCrash,
    Publish,
    RenewLease,
    StreamHead,
)
from flowbus.agents.run_entry import RunEntry
from flowbus.broker import protocol as p

from .decision_tables import EXPIRED, FACTS, HELD, NOW, RUN, S, decided, entry, pure, states

LEASE = 30.0


def claim(run: RunEntry | None, facts: Facts = FACTS, agent: str = "b") -> Any:
    request = p.ClaimRequest(run_id=RUN, agent=agent)
    return pure(decide_claim, run, request, facts, NOW, LEASE)


CLAIMS: list[tuple[str, RunEntry | None, Facts, str, list[str]]] = [
    # (case, run, facts, reply: "grant N" or the refusal's reason, states recorded)
    ("unknown run", None, FACTS, "unknown", []),
    ("queued", entry(S.SCHEDULED), FACTS, "grant 1", ["Pending"]),
    ("late", entry(S.SCHEDULED, "Late"), FACTS, "grant 1", ["Pending"]),
    ("queued again", entry(S.SCHEDULED, "AwaitingRetry", attempt=2), FACTS, "grant 3",
     ["Pending"]),
    ("deployment gone", entry(S.SCHEDULED), FACTS.with_(deployment=None), "unknown", []),
    ("held by a live agent", entry(S.RUNNING, **HELD), FACTS, "leased", []),
    ("granted, started", entry(S.PENDING, **HELD), FACTS.with_(stream_head=StreamHead(4, 1)),
     "leased", []),
    ("granted, not started", entry(S.PENDING, **HELD), FACTS, "starting", []),
    ("granted, stream unreadable", entry(S.PENDING, **HELD),
     FACTS.with_(stream_head=UNREADABLE), "leased", []),
    ("holder's lease ran out", entry(S.RUNNING, **EXPIRED), FACTS, "grant 2",
     ["Crashed", "AwaitingRetry", "Pending"]),
    ("holder's lease ran out, no budget left", entry(S.RUNNING, crashes=3, **EXPIRED), FACTS,
     "finished", ["Crashed"]),
    ("cancelling, lease ran out", entry(S.CANCELLING, **EXPIRED), FACTS, "cancelled",
     ["Cancelled"]),
    ("fenced, not queued", entry(S.RUNNING, agent="a", attempt=1, open=False), FACTS,
     "illegal", []),
    ("paused", entry(S.PAUSED), FACTS, "illegal", []),
    ("cancelling", entry(S.CANCELLING, **HELD), FACTS, "cancelled", []),
    ("cancelled", entry(S.CANCELLED), FACTS, "cancelled", []),
    ("completed", entry(S.COMPLETED), FACTS, "finished", []),
    ("failed", entry(S.FAILED), FACTS, "finished", []),
    ("crashed", entry(S.CRASHED), FACTS, "finished", []),
]  # fmt: skip


@pytest.mark.parametrize(("case", "run", "facts", "reply", "recorded"), CLAIMS,
                         ids=[case[0] for case in CLAIMS])  # fmt: skip
def test_a_claim(
    case: str, run: RunEntry | None, facts: Facts, reply: str, recorded: list[str]
) -> None:
    verdict = decided(claim(run, facts))
    if isinstance(verdict.reply, p.ClaimGrant):
        assert f"grant {verdict.reply.attempt}" == reply
        assert run is not None
        assert verdict.reply.seq == run.seq + len(verdict.changes)  # the claim's own event
        assert verdict.changes[-1].agent == "b"
        assert verdict.changes[-1].attempt == verdict.reply.attempt
    else:
        assert verdict.reply.reason == reply
    assert (states(run, verdict.changes) if run else []) == recorded


def test_a_crash_queued_again_and_taken_at_once_is_not_published() -> None:
    verdict = decided(claim(entry(S.RUNNING, **EXPIRED)))
    assert not any(isinstance(effect, Publish) for effect in verdict.effects)
    assert any(isinstance(effect, NoteCrash) and effect.requeued for effect in verdict.effects)


def test_a_crash_queued_again_but_not_granted_is_published() -> None:
    verdict = decided(claim(entry(S.RUNNING, **EXPIRED), FACTS.with_(deployment=None)))
    assert isinstance(verdict.reply, p.ClaimRefusal)
    assert verdict.effects == (NoteCrash("agent a stopped renewing its lease", True), Publish())


def test_the_holder_that_never_heard_its_grant_gets_it_again() -> None:
    pending = entry(S.PENDING, **HELD)
    verdict = decided(claim(pending, FACTS, agent="a"))
    assert isinstance(verdict.reply, p.ClaimGrant)
    assert (verdict.reply.attempt, verdict.reply.seq) == (1, pending.seq)  # the same grant
    assert verdict.changes == ()
    started = FACTS.with_(stream_head=StreamHead(pending.seq + 1, 1))
    assert decided(claim(pending, started, agent="a")).reply.reason == "leased"


def test_a_claim_asks_for_what_it_needs() -> None:
    pending = entry(S.PENDING, **HELD)
    assert claim(pending, FACTS.with_(stream_head=UNREAD)) == NeedFacts(stream_head=True)
    assert claim(entry(S.SCHEDULED), FACTS.with_(deployment=UNREAD)) == NeedFacts(deployment=True)
    # A refusal that needs no deployment does not ask for it.
    assert decided(claim(entry(S.COMPLETED), FACTS.with_(deployment=UNREAD))).reply.reason == (
        "finished"
    )


RELEASES: list[tuple[str, RunEntry | None, str, str, int, list[str]]] = [
    # (case, run, outcome, agent, attempt, states recorded)
    ("crashed", entry(S.RUNNING, **HELD), "crashed", "a", 1, ["Crashed", "AwaitingRetry"]),
    ("crashed, no budget", entry(S.RUNNING, crashes=3, **HELD), "crashed", "a", 1, ["Crashed"]),
    ("crashed while cancelling", entry(S.CANCELLING, **HELD), "crashed", "a", 1,
     ["Cancelled"]),
    ("cancelled", entry(S.RUNNING, **HELD), "cancelled", "a", 1, ["Cancelling", "Cancelled"]),
    ("cancelled, was cancelling", entry(S.CANCELLING, **HELD), "cancelled", "a", 1,
     ["Cancelled"]),
    ("handed back", entry(S.RUNNING, **HELD), "handed_back", "a", 1, ["Scheduled"]),
    ("another agent's", entry(S.RUNNING, **HELD), "crashed", "b", 1, []),
    ("an older attempt", entry(S.RUNNING, **HELD), "crashed", "a", 0, []),
    ("fenced", entry(S.RUNNING, agent="a", attempt=1, open=False), "crashed", "a", 1, []),
    ("over", entry(S.COMPLETED, **HELD), "crashed", "a", 1, []),
    ("unknown", None, "handed_back", "a", 1, []),
]  # fmt: skip


@pytest.mark.parametrize(("case", "run", "outcome", "agent", "attempt", "recorded"), RELEASES,
                         ids=[case[0] for case in RELEASES])  # fmt: skip
def test_a_release(
    case: str, run: RunEntry | None, outcome: Any, agent: str, attempt: int, recorded: list[str]
) -> None:
    request = p.ReleaseRequest(run_id=RUN, attempt=attempt, agent=agent, outcome=outcome)
    verdict = decided(pure(decide_release, run, request, NOW))
    assert verdict.reply == p.Ok()
    assert (states(run, verdict.changes) if run else []) == recorded
    requeued = "AwaitingRetry" in recorded
    assert (Publish() in verdict.effects) == requeued


def test_a_hand_back_fences_the_attempt_and_leaves_the_request_queued() -> None:
    run = entry(S.RUNNING, **HELD)
    request = p.ReleaseRequest(run_id=RUN, attempt=1, agent="a", outcome="handed_back")
    [back] = decided(pure(decide_release, run, request, NOW)).changes
    assert back.close and back.still_queued
    from flowbus.agents.run_entry import after

    queued = after(run, [back], NOW.mono)
    assert queued.published and not queued.open and queued.queued_seq == run.seq + 1


EXPIRIES: list[tuple[str, RunEntry | None, Facts, Any, list[str]]] = [
    # (case, run, facts, reply or NeedFacts, states recorded)
    ("lease good", entry(S.RUNNING, **HELD), FACTS, False, []),
    ("expired", entry(S.RUNNING, **EXPIRED), FACTS, True, ["Crashed", "AwaitingRetry"]),
    ("expired, no budget", entry(S.RUNNING, crashes=3, **EXPIRED), FACTS, True, ["Crashed"]),
    ("expired while cancelling", entry(S.CANCELLING, **EXPIRED), FACTS, True, ["Cancelled"]),
    ("expired, stream unread", entry(S.RUNNING, **EXPIRED), FACTS.with_(stream_head=UNREAD),
     NeedFacts(stream_head=True), []),
    ("agent ahead of the store", entry(S.RUNNING, **EXPIRED),
     FACTS.with_(stream_head=StreamHead(5, 1)), False, []),
    ("another attempt ahead", entry(S.RUNNING, **EXPIRED),
     FACTS.with_(stream_head=StreamHead(5, 2)), True, ["Crashed", "AwaitingRetry"]),
    ("stream unreadable", entry(S.RUNNING, **EXPIRED), FACTS.with_(stream_head=UNREADABLE),
     True, ["Crashed", "AwaitingRetry"]),
    ("nobody holds it", entry(S.SCHEDULED, lease_until=0), FACTS, False, []),
    ("unknown", None, FACTS, False, []),
]  # fmt: skip


@pytest.mark.parametrize(("case", "run", "facts", "reply", "recorded"), EXPIRIES,
                         ids=[case[0] for case in EXPIRIES])  # fmt: skip
def test_a_lease_expiry(
    case: str, run: RunEntry | None, facts: Facts, reply: Any, recorded: list[str]
) -> None:
    outcome = pure(decide_expiry, run, facts.with_(term=7), NOW)
    if isinstance(reply, NeedFacts):
        assert outcome == reply
        return
    verdict = decided(outcome)
    assert verdict.reply is reply
    assert (states(run, verdict.changes) if run else []) == recorded
    if verdict.changes:  # the crash (or cancel) is the leader's: it carries the term
        assert verdict.changes[0].leader_term == 7
    if case == "agent ahead of the store":
        assert verdict.effects == (RenewLease(),)
    if verdict.reply and run is not None and run.state is not S.CANCELLING:
        crashed = [e for e in verdict.effects if isinstance(e, NoteCrash)]
        assert crashed and crashed[0].lease_expired


def test_the_crash_budget_counts_crashes_and_starts_over_on_a_retry() -> None:
    run = entry(S.RUNNING, crash_retries=2, crashes=1, **EXPIRED)
    verdict = decided(pure(decide_expiry, run, FACTS, NOW))
    assert states(run, verdict.changes) == ["Crashed", "AwaitingRetry"]
    assert "crash 2 of 2" in verdict.changes[-1].state.message
    spent = entry(S.RUNNING, crash_retries=2, crashes=2, **EXPIRED)
    assert states(spent, decided(pure(decide_expiry, spent, FACTS, NOW)).changes) == ["Crashed"]


def beat(*held: tuple[str, int]) -> p.Heartbeat:
    runs = [p.HeldRun(run_id=run_id, attempt=attempt) for run_id, attempt in held]
    return p.Heartbeat(agent="a", queues=["default"], concurrency=1, runs=runs, started="t")


def test_a_heartbeat_renews_what_its_agent_holds_and_checks_the_rest() -> None:
    mine = entry(S.RUNNING, run_id="mine", **HELD)
    fenced = entry(S.RUNNING, run_id="fenced", agent="a", attempt=1, open=False)
    others = entry(S.RUNNING, run_id="others", agent="b", attempt=2, open=True)
    entries = {e.run_id: e for e in (mine, fenced, others)}
    heartbeat = beat(("mine", 1), ("fenced", 1), ("others", 1), ("unknown", 1), ("known", 1))
    known_lost = frozenset({("a", "known", 1)})
    verdict = decide_heartbeat(heartbeat, entries, known_lost, frozenset({"unknown"}), True, LEASE)
    assert verdict.renew == ("mine",)
    assert verdict.lost == ("known",)
    assert [held.run_id for held in verdict.check] == ["fenced", "others"]  # unknown: under way
    assert verdict.reply == p.HeartbeatReply(lost=["known"], lease_seconds=LEASE)
    follower = decide_heartbeat(heartbeat, entries, known_lost, frozenset(), False, LEASE)
    assert follower.reply is None and follower.check == () and follower.renew == ("mine",)


def test_a_claim_named_by_another_queue_is_refused() -> None:
    """A claim on ``flowbus.agent.claim.<queue>`` names the queue its request came from (an
    agent's credential may claim on its own queues only): a run of another queue is not its."""
    run = entry(S.SCHEDULED)
    mine = p.ClaimRequest(run_id=RUN, agent="b", queue=run.queue)
    assert isinstance(pure(decide_claim, run, mine, FACTS, NOW, LEASE).reply, p.ClaimGrant)
    other = p.ClaimRequest(run_id=RUN, agent="b", queue="elsewhere")
    refusal = pure(decide_claim, run, other, FACTS, NOW, LEASE).reply
    assert isinstance(refusal, p.ClaimRefusal) and refusal.reason == "illegal"
    assert "not this agent's" in refusal.message


def test_a_grant_carries_the_slot_the_run_was_scheduled_for() -> None:
    from datetime import UTC, datetime

    slot = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    scheduled = entry(S.SCHEDULED, due_at=slot.timestamp())
    grant = decided(claim(scheduled)).reply
    assert isinstance(grant, p.ClaimGrant) and grant.scheduled_time == slot
    at_once = decided(claim(entry(S.SCHEDULED))).reply
    assert isinstance(at_once, p.ClaimGrant) and at_once.scheduled_time is None


def test_a_hand_back_of_a_run_handed_over_at_submit_publishes_a_request() -> None:
    run = entry(S.RUNNING, handed_over=True, **HELD)
    request = p.ReleaseRequest(run_id=RUN, attempt=1, agent="a", outcome="handed_back")
    verdict = decided(pure(decide_release, run, request, NOW))
    [back] = verdict.changes
    assert back.close and not back.still_queued  # no request of it was ever in the queue
    assert verdict.effects == (Publish(),)
    from flowbus.agents.run_entry import after

    queued = after(run, [back], NOW.mono)
    assert not queued.published and not queued.open and queued.state is S.SCHEDULED
