"""Submissions and releases, decided against tables: whether a submission makes a run, who
publishes its request and when (a deployment's limits, a schedule's overlap policy)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from flowbus.agents.decisions.model import (
    UNREAD,
    ArmTimer,
    Facts,
    HandOver,
    NeedFacts,
    Publish,
    Release,
)
from flowbus.agents.decisions.releases import (
    adopt,
    after_submit,
    decide_submit,
    decide_submit_handed,
    going,
    held_back,
    limited_release,
    may_hand_over,
    new_run,
    released_by_leader,
    schedule_refusal,
)
from flowbus.agents.run_entry import RunEntry, after, created_record, entry_from_created
from flowbus.broker import protocol as p
from flowbus.engine.events import FlowRunCreated, decode_event
from flowbus.engine.store import FlowRunView

from .decision_tables import FACTS, HELD, NOW, RUN, S, decided, deployment, entry, pure

LATER = datetime.fromtimestamp(NOW.wall + 3600, UTC)


def request(**fields: Any) -> p.SubmitRequest:
    return p.SubmitRequest(deployment="f/d", parameters={"n": 1}, **fields)


def submitted(
    run: RunEntry | None, facts: Facts = FACTS, given: dict[str, Any] | None = None, **fields: Any
) -> Any:
    asked = request(**fields)
    made = new_run(RUN, "brave-otter", asked, deployment(), given or {"n": 1}, NOW)
    return pure(decide_submit, run, asked, made, facts, NOW)


def stored(parameters: dict[str, Any]) -> FlowRunView:
    return FlowRunView(
        id=RUN, flow_name="f", name="calm-heron", flow_version=None, deployment="f/d",
        parent_run_id=None, parent_task_run_id=None, parameters=parameters, tags=[],
        state_type="COMPLETED", state_name="Completed", state_message=None, state_timestamp="",
        created="", started=None, ended=None, run_count=1, result=None,
    )  # fmt: skip


def test_a_submission_makes_a_scheduled_run_whose_event_is_valid() -> None:
    verdict = decided(submitted(None, FACTS.with_(view=None)))
    assert verdict.reply == p.SubmitReply(run_id=RUN, name="brave-otter", queue="default",
                                          created=True)  # fmt: skip
    assert verdict.create is not None and verdict.changes == ()
    record = created_record(verdict.create)
    event = decode_event(record.body())  # as any subscriber reads it
    assert isinstance(event, FlowRunCreated) and event.state.name == "Scheduled"
    assert record.typed() == event  # the model the ledger builds its entry from
    run = entry_from_created(event)
    assert run is not None and run.queued_seq == 1 and not run.published


def test_a_run_for_later_carries_its_time_and_schedule() -> None:
    verdict = decided(submitted(None, FACTS.with_(view=None), scheduled_time=LATER,
                                schedule_id=4, idempotency_key="k"))  # fmt: skip
    assert verdict.create is not None
    record = created_record(verdict.create)
    assert record.typed() == decode_event(record.body())
    run = entry_from_created(record.typed())  # type: ignore[arg-type]
    assert run is not None
    assert (run.due_at, run.schedule_id) == (LATER.timestamp(), 4)
    assert verdict.create.state.message == f"for {LATER.isoformat(timespec='microseconds')}"


SUBMISSIONS: list[tuple[str, RunEntry | None, Facts, dict[str, Any], str]] = [
    ("new, no key", None, FACTS, {"n": 1}, "created"),
    ("new, a key", None, FACTS.with_(view=None), {"n": 1}, "created"),
    ("the key's run, followed", entry(S.RUNNING, **HELD), FACTS, {"n": 1}, "existing"),
    ("the key's run, finished", None, FACTS.with_(view=stored({"n": 1})), {"n": 1}, "existing"),
    ("the key, other parameters", entry(S.SCHEDULED), FACTS, {"n": 2}, "idempotency_conflict"),
    ("the key, other parameters, finished", None, FACTS.with_(view=stored({"n": 1})), {"n": 2},
     "idempotency_conflict"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "run", "facts", "given", "outcome"), SUBMISSIONS,
                         ids=[case[0] for case in SUBMISSIONS])  # fmt: skip
def test_a_submission(
    case: str, run: RunEntry | None, facts: Facts, given: dict[str, Any], outcome: str
) -> None:
    key = None if case == "new, no key" else "key-1"
    verdict = decided(submitted(run, facts, given, idempotency_key=key))
    reply = verdict.reply
    if outcome == "idempotency_conflict":
        assert isinstance(reply, p.ErrorReply) and reply.error.code == outcome
        assert reply.error.details["parameters"] == {"n": 1}
    else:
        assert isinstance(reply, p.SubmitReply)
        assert reply.created is (outcome == "created")
        assert (verdict.create is not None) is (outcome == "created")


def test_a_keyed_submission_asks_the_store_whether_its_run_exists() -> None:
    assert submitted(None, Facts(deployment=deployment()), idempotency_key="k") == NeedFacts(
        view=True
    )
    # A random id cannot have been taken: no read.
    assert decided(submitted(None, Facts(deployment=deployment()))).create is not None


LIMITED = deployment(concurrency_limit=2)
SCHEDULED_RUNS = deployment(schedules=[{"id": 4, "active": True}])
AFTER_SUBMIT: list[tuple[str, RunEntry, Any, bool, tuple[Any, ...]]] = [
    # (case, new run, its deployment, leading, effects)
    ("leader, due now", entry(S.SCHEDULED, seq=1), deployment(), True, (Release(),)),
    ("leader, due later", entry(S.SCHEDULED, seq=1, due_at=NOW.wall + 60), deployment(), True,
     (ArmTimer(NOW.wall + 60),)),
    ("follower, plain", entry(S.SCHEDULED, seq=1), deployment(), False, (Publish(),)),
    ("follower, due later", entry(S.SCHEDULED, seq=1, due_at=NOW.wall + 60), deployment(), False,
     ()),
    ("follower, a schedule's", entry(S.SCHEDULED, seq=1, schedule_id=4), SCHEDULED_RUNS, False,
     ()),
    ("follower, limited", entry(S.SCHEDULED, seq=1), LIMITED, False, ()),
    ("published already", entry(S.SCHEDULED, seq=1, published_seq=1), deployment(), True, ()),
    ("moved on", entry(S.PENDING, seq=2, **HELD), deployment(), True, ()),
]  # fmt: skip


@pytest.mark.parametrize(("case", "run", "its_deployment", "leading", "effects"), AFTER_SUBMIT,
                         ids=[case[0] for case in AFTER_SUBMIT])  # fmt: skip
def test_who_publishes_a_new_run(
    case: str, run: RunEntry, its_deployment: Any, leading: bool, effects: tuple[Any, ...]
) -> None:
    assert after_submit(run, its_deployment, leading, NOW) == effects


def test_the_leader_adopts_only_the_runs_only_it_may_release() -> None:
    assert adopt(entry(S.SCHEDULED, seq=1), deployment(), NOW) == ()
    assert adopt(entry(S.SCHEDULED, seq=1), LIMITED, NOW) == (Release(),)
    later = entry(S.SCHEDULED, seq=1, due_at=NOW.wall + 5)
    assert adopt(later, deployment(), NOW) == (ArmTimer(NOW.wall + 5),)
    assert adopt(later, None, NOW) == ()  # its deployment is gone
    assert released_by_leader(entry(S.SCHEDULED, schedule_id=1), deployment(), NOW.wall)
    assert not released_by_leader(entry(S.SCHEDULED), deployment(), NOW.wall)


def run_of(run_id: str, state: Any, **fields: Any) -> RunEntry:
    return entry(state, run_id=run_id, **fields)


def test_a_limited_deployment_publishes_while_it_has_room() -> None:
    new = run_of("new", S.SCHEDULED)
    others = [
        run_of("running", S.RUNNING, **HELD),
        run_of("queued", S.SCHEDULED, published_seq=1, queued_seq=1),
        run_of("waiting", S.SCHEDULED),  # held back itself: does not count
        run_of("over", S.COMPLETED),
        entry(S.RUNNING, run_id="elsewhere", deployment="f/other"),
    ]
    assert [r.run_id for r in going(new, others)] == ["running", "queued"]
    assert limited_release(new, deployment(concurrency_limit=3), 2) == Publish()
    assert limited_release(new, deployment(concurrency_limit=2), 2) is None  # it waits
    cancel = limited_release(new, deployment(concurrency_limit=2, collision="cancel"), 2)
    assert isinstance(cancel, str) and "collision strategy cancel" in cancel
    assert limited_release(new, deployment(), 99) == Publish()  # no limit


def test_the_runs_held_back_are_offered_room_oldest_first() -> None:
    runs = [
        run_of("young", S.SCHEDULED, queued_at=NOW.wall - 1),
        run_of("old", S.SCHEDULED, queued_at=NOW.wall - 9),
        run_of("due later", S.SCHEDULED, due_at=NOW.wall + 60),
        run_of("uncommitted", S.SCHEDULED, committed=False),
        run_of("published", S.SCHEDULED, published_seq=3, queued_seq=3),
        run_of("running", S.RUNNING, **HELD),
    ]
    assert [r.run_id for r in held_back("f/d", runs, NOW.wall)] == ["old", "young"]


OVERLAP: list[tuple[str, Any, list[RunEntry], str | None, list[str]]] = [
    ("schedule active, nothing running", SCHEDULED_RUNS, [], None, []),
    ("schedule paused", deployment(schedules=[{"id": 4, "active": False}]), [],
     "schedule 4 of f/d is paused or removed", []),
    ("schedule removed", deployment(), [], "schedule 4 of f/d is paused or removed", []),
    ("deployment gone", None, [], "deployment f/d is gone", []),
    ("overlap allowed", SCHEDULED_RUNS, [run_of("r", S.RUNNING, **HELD)], None, []),
    ("overlap skipped", deployment(schedules=[{"id": 4}], overlap="skip"),
     [run_of("r", S.RUNNING, name="busy-bee", **HELD)],
     "skipped: run busy-bee of f/d is still running (overlap policy skip)", []),
    ("overlap cancels the running", deployment(schedules=[{"id": 4}], overlap="cancel"),
     [run_of("r", S.RUNNING, **HELD), run_of("p", S.PAUSED), run_of("q", S.SCHEDULED)],
     None, ["r", "p"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "its_deployment", "others", "refusal", "cancels"), OVERLAP,
                         ids=[case[0] for case in OVERLAP])  # fmt: skip
def test_a_schedules_run_when_its_time_comes(
    case: str, its_deployment: Any, others: list[RunEntry], refusal: str | None,
    cancels: list[str],
) -> None:  # fmt: skip
    run = run_of("new", S.SCHEDULED, schedule_id=4)
    assert schedule_refusal(run, its_deployment, [run, *others]) == (refusal, cancels)


def handed(run: RunEntry | None, facts: Facts = FACTS, **fields: Any) -> Any:
    asked = request(**fields)
    made = new_run(RUN, "brave-otter", asked, deployment(), {"n": 1}, NOW)
    return pure(decide_submit_handed, run, asked, made, facts, NOW, "local")


def test_a_run_handed_over_is_made_and_claimed_in_one_decision() -> None:
    verdict = decided(handed(None))
    assert verdict.create is not None
    assert verdict.effects == (HandOver("local", attempt=1, seq=2),)
    [claim] = verdict.changes
    assert (claim.state.name, claim.agent, claim.attempt, claim.handed_over) == (
        "Pending",
        "local",
        1,
        True,
    )
    run = entry_from_created(created_record(verdict.create).typed())  # type: ignore[arg-type]
    assert run is not None
    claimed = after(run, verdict.changes, NOW.mono)
    assert claimed.held and claimed.handed_over and claimed.seq == 2 and claimed.attempt == 1
    assert not claimed.published  # nothing of it is in the queue


def test_a_submission_that_makes_no_run_hands_nothing_over() -> None:
    existing = entry(S.RUNNING, **HELD)
    verdict = decided(handed(existing))
    assert verdict.create is None and verdict.changes == () and verdict.effects == ()
    asked = handed(None, FACTS.with_(view=UNREAD), idempotency_key="k")
    assert asked == NeedFacts(view=True)


@pytest.mark.parametrize(
    ("case", "fields", "limit", "expected"),
    [
        ("due now", {}, None, True),
        ("due later", {"scheduled_time": LATER}, None, False),
        ("a schedule's run", {"schedule_id": 3}, None, False),
        ("a limited deployment", {}, 2, False),
    ],
)
def test_which_runs_may_be_handed_over(
    case: str, fields: dict[str, Any], limit: int | None, expected: bool
) -> None:
    made = new_run(RUN, "brave-otter", request(**fields), deployment(), {"n": 1}, NOW)
    assert may_hand_over(made, deployment(concurrency_limit=limit), NOW.wall) is expected, case
