"""The orchestrator's pure decisions, against tables of runs in every state."""

from __future__ import annotations

import pytest

from flowbus.agents.decisions import (
    Sweep,
    audit_due,
    awaits_start,
    claim_refusal,
    grant_again,
    held_by,
    lost_requests,
    sweep_actions,
)
from flowbus.agents.run_entry import RunEntry
from flowbus.engine.states import StateType

S = StateType
NOW, WALL = 1000.0, 1_800_000_000.0
LATE, GRACE = 15.0, 3.0


def entry(state: StateType, name: str | None = None, **fields: object) -> RunEntry:
    values: dict[str, object] = {
        "run_id": "r", "name": "n", "deployment": "f/d", "queue": "default", "state": state,
        "state_name": name or state.value.title(), "seq": 1, "parameters": {}, "tags": [],
        "queued_at": WALL,
    }  # fmt: skip
    values.update(fields)
    return RunEntry(**values)  # type: ignore[arg-type]


HELD = {"agent": "a", "attempt": 1, "open": True}

SWEEPS = [
    # (entry, expected actions)
    (entry(S.SCHEDULED), [Sweep.RELEASE]),
    (entry(S.SCHEDULED, published_seq=1), []),
    (entry(S.SCHEDULED, due_at=WALL + 60), [Sweep.ARM]),
    (entry(S.SCHEDULED, committed=False), []),
    (entry(S.SCHEDULED, published_seq=1, queued_at=WALL - 20), [Sweep.MARK_LATE]),
    (entry(S.SCHEDULED, "Late", published_seq=1, queued_at=WALL - 20), []),
    (entry(S.SCHEDULED, published_seq=1, foreign=True, queued_at=WALL - 5), [Sweep.REPUBLISH]),
    (entry(S.SCHEDULED, published_seq=1, foreign=True, queued_at=WALL - 1), []),
    (
        entry(S.SCHEDULED, published_seq=1, foreign=True, queued_at=WALL - 20),
        [Sweep.REPUBLISH, Sweep.MARK_LATE],
    ),
    (entry(S.PENDING, lease_until=NOW + 1, **HELD), []),
    (entry(S.PENDING, lease_until=NOW - 1, **HELD), [Sweep.EXPIRE]),
    (entry(S.RUNNING, lease_until=NOW - 1, **HELD), [Sweep.EXPIRE]),
    (entry(S.CANCELLING, lease_until=NOW - 1, **HELD), [Sweep.EXPIRE]),
    (entry(S.RUNNING, lease_until=NOW - 1, agent="a", attempt=1, open=False), []),  # fenced
    (entry(S.PAUSED, pause_deadline=WALL - 1), [Sweep.EXPIRE_PAUSE]),
    (entry(S.PAUSED, pause_deadline=WALL + 1), []),
    (entry(S.COMPLETED, lease_until=NOW - 1, **HELD), []),
    (entry(S.FAILED), []),
    (entry(S.CRASHED), []),
    (entry(S.CANCELLED), []),
]


@pytest.mark.parametrize(("run", "expected"), SWEEPS)
def test_what_the_janitor_does_with_each_run(run: RunEntry, expected: list[Sweep]) -> None:
    assert sweep_actions(run, NOW, WALL, LATE, GRACE) == expected


def test_a_queue_is_read_only_when_it_holds_fewer_requests_than_believed() -> None:
    assert audit_due(believed=3, held=2)
    assert not audit_due(believed=3, held=3)
    assert not audit_due(believed=3, held=5)  # copies, and requests of runs under way
    assert not audit_due(believed=0, held=0)


def test_the_lost_requests_are_those_published_a_while_ago_and_not_in_the_queue() -> None:
    def queued(
        run_id: str, ago: float, state: StateType = S.SCHEDULED, **fields: object
    ) -> RunEntry:
        return entry(state, run_id=run_id, queued_at=WALL - ago, **{"published_seq": 1, **fields})

    there, lost, recent = queued("there", 30), queued("lost", 30), queued("recent", 2)
    late = queued("late", 60, state_name="Late")
    claimed = queued("claimed", 30, state=S.PENDING)  # taken while the queue was read
    unpublished = queued("unpublished", 30, published_seq=0)  # the sweep releases it
    believed = [there, lost, recent, late, claimed, unpublished]
    found = lost_requests(believed, {"there"}, WALL, grace=10)
    assert [e.run_id for e in found] == ["lost", "late"]


CLAIMS = [
    (entry(S.SCHEDULED), None),
    (entry(S.SCHEDULED, "Late"), None),
    (entry(S.SCHEDULED, "AwaitingRetry"), None),
    (entry(S.PENDING, lease_until=NOW + 1e9, **HELD), "leased"),
    (entry(S.RUNNING, lease_until=NOW + 1e9, **HELD), "leased"),
    (entry(S.RUNNING, agent="a", attempt=1, open=False), "illegal"),
    (entry(S.PAUSED), "illegal"),
    (entry(S.CANCELLING, **HELD), "cancelled"),
    (entry(S.CANCELLED), "cancelled"),
    (entry(S.COMPLETED), "finished"),
    (entry(S.FAILED), "finished"),
    (entry(S.CRASHED), "finished"),
]


@pytest.mark.parametrize(("run", "reason"), CLAIMS)
def test_which_claims_are_refused(run: RunEntry, reason: str | None) -> None:
    refusal = claim_refusal(run)
    assert (refusal.reason if refusal else None) == reason


def test_only_the_open_attempt_of_its_agent_holds_a_run() -> None:
    run = entry(S.RUNNING, **HELD)
    assert held_by(run, "a", 1)
    assert not held_by(run, "b", 1) and not held_by(run, "a", 2)
    run.open = False
    assert not held_by(run, "a", 1)


def test_a_claim_is_granted_again_only_to_its_holder_before_its_attempt_starts() -> None:
    pending = entry(S.PENDING, **HELD)
    assert grant_again(pending, "a")  # the first answer never reached agent a
    assert not grant_again(pending, "b")  # another agent: refused, as held
    assert not grant_again(entry(S.RUNNING, **HELD), "a")  # started: never again
    assert not grant_again(entry(S.PENDING, agent="a", attempt=1, open=False), "a")  # fenced
    assert not grant_again(entry(S.SCHEDULED), "a")


def test_another_agent_puts_back_a_run_whose_holder_has_not_started_it() -> None:
    """Refused "starting", not "leased": its holder may need the request back, so the
    claimant naks it rather than acking it away."""
    pending = entry(S.PENDING, **HELD)
    assert awaits_start(pending)
    assert claim_refusal(pending, unstarted=True).reason == "starting"  # type: ignore[union-attr]
    # The events stream holds a later state: started (the store lags), so "leased".
    assert claim_refusal(pending, unstarted=False).reason == "leased"  # type: ignore[union-attr]
    assert not awaits_start(entry(S.RUNNING, **HELD))
    assert not awaits_start(entry(S.PENDING, agent="a", attempt=1, open=False))
