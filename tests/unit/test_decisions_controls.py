"""Cancel, resume, retry, a pause's timeout and Late, decided against tables of runs in every
state: no NATS, no store."""

from __future__ import annotations

from typing import Any

import pytest

from flowbus.agents.decisions.controls import (
    decide_cancel,
    decide_cancel_unstarted,
    decide_cancel_without_agent,
    decide_mark_late,
    decide_pause_expiry,
    decide_resume,
    decide_retry,
)
from flowbus.agents.decisions.model import UNREAD, AskAgentToCancel, Facts, NeedFacts, Publish
from flowbus.agents.run_entry import RunEntry, after
from flowbus.broker import protocol as p
from flowbus.engine.store import FlowRunView

from .decision_tables import EXPIRED, FACTS, HELD, NOW, RUN, S, decided, entry, pure, states


def view(state_type: str, state_name: str) -> FlowRunView:
    return FlowRunView(
        id=RUN, flow_name="f", name="local-run", flow_version=None, deployment=None,
        parent_run_id=None, parent_task_run_id=None, parameters={}, tags=[],
        state_type=state_type, state_name=state_name, state_message=None, state_timestamp="",
        created="", started=None, ended=None, run_count=1, result=None,
    )  # fmt: skip


def reply_of(reply: Any) -> str:
    """A reply in a word: the error's code, or the state the run is in now."""
    if isinstance(reply, p.ErrorReply):
        return reply.error.code
    return reply.state if reply is not None else "ask the agent"


CANCELS: list[tuple[str, RunEntry | None, Facts, str, list[str]]] = [
    ("queued", entry(S.SCHEDULED), FACTS, "Cancelled", ["Cancelled"]),
    ("paused", entry(S.PAUSED), FACTS, "Cancelled", ["Cancelled"]),
    ("running", entry(S.RUNNING, **HELD), FACTS, "ask the agent", []),
    ("granted", entry(S.PENDING, **HELD), FACTS, "ask the agent", []),
    ("holder's lease ran out", entry(S.RUNNING, **EXPIRED), FACTS, "Cancelled", ["Cancelled"]),
    ("cancelling", entry(S.CANCELLING, **HELD), FACTS, "Cancelling", []),
    ("completed", entry(S.COMPLETED), FACTS, "Completed", []),
    ("cancelled", entry(S.CANCELLED), FACTS, "Cancelled", []),
    ("unknown", None, FACTS, "not_found", []),
    ("a run by hand, over", None, FACTS.with_(view=view("COMPLETED", "Completed")), "Completed",
     []),
    ("a run by hand, running", None, FACTS.with_(view=view("RUNNING", "Running")),
     "not_cancellable", []),
]  # fmt: skip


@pytest.mark.parametrize(("case", "run", "facts", "reply", "recorded"), CANCELS,
                         ids=[case[0] for case in CANCELS])  # fmt: skip
def test_a_cancel(
    case: str, run: RunEntry | None, facts: Facts, reply: str, recorded: list[str]
) -> None:
    verdict = decided(pure(decide_cancel, run, p.CancelRequest(run_id=RUN), facts, NOW))
    assert reply_of(verdict.reply) == reply
    assert (states(run, verdict.changes) if run else []) == recorded
    if reply == "ask the agent":
        assert verdict.effects == (AskAgentToCancel("a", 1),)
    if recorded:
        assert verdict.changes[0].close  # the holder's attempt is fenced


def test_a_cancel_of_a_run_nobody_follows_asks_the_store() -> None:
    assert pure(decide_cancel, None, p.CancelRequest(run_id=RUN), Facts(), NOW) == NeedFacts(
        view=True
    )


def test_a_holder_that_does_not_answer_is_fenced_and_the_cancel_recorded() -> None:
    run = entry(S.RUNNING, **HELD)
    verdict = decided(pure(decide_cancel_without_agent, run, RUN, 1, NOW))
    assert states(run, verdict.changes) == ["Cancelling", "Cancelled"]
    assert verdict.changes[0].close and verdict.reply.state == "Cancelled"
    # Another attempt holds it by now, or it ended: nothing to record.
    assert decided(pure(decide_cancel_without_agent, run, RUN, 2, NOW)).changes == ()
    over = entry(S.COMPLETED)
    assert decided(pure(decide_cancel_without_agent, over, RUN, 1, NOW)).reply.state == "Completed"


SCHEMA = {"type": "object", "properties": {"approved": {"type": "boolean"}},
          "required": ["approved"]}  # fmt: skip
RESUMES: list[tuple[str, RunEntry | None, Facts, Any, str]] = [
    ("paused, no input", entry(S.PAUSED, pause_key="p1"), FACTS, None, "Scheduled"),
    ("paused, input given unasked", entry(S.PAUSED, pause_key="p1"), FACTS, {"x": 1},
     "invalid_input"),
    ("paused, valid input", entry(S.PAUSED, pause_key="p1", pause_input_schema=SCHEMA), FACTS,
     {"approved": "yes"}, "Scheduled"),
    ("paused, invalid input", entry(S.PAUSED, pause_key="p1", pause_input_schema=SCHEMA), FACTS,
     {"approved": "perhaps"}, "invalid_input"),
    ("running", entry(S.RUNNING, **HELD), FACTS.with_(view=view("RUNNING", "Running")), None,
     "not_paused"),
    ("unknown", None, FACTS, None, "not_found"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "run", "facts", "given", "reply"), RESUMES,
                         ids=[case[0] for case in RESUMES])  # fmt: skip
def test_a_resume(case: str, run: RunEntry | None, facts: Facts, given: Any, reply: str) -> None:
    request = p.ResumeRequest(run_id=RUN, input=given)
    verdict = decided(pure(decide_resume, run, request, facts, NOW))
    assert reply_of(verdict.reply) == reply
    if reply != "Scheduled":
        assert verdict.changes == ()
        return
    assert run is not None
    assert states(run, verdict.changes) == ["Scheduled"]
    assert verdict.effects == (Publish(),)
    resumed = after(run, verdict.changes, NOW.mono)
    expected = {"approved": True} if given == {"approved": "yes"} else given  # validated
    assert resumed.resumes == {"p1": expected}
    assert not resumed.published  # queued again: its request is to be published


def test_a_resume_of_a_run_the_ledger_does_not_show_paused_asks_the_store() -> None:
    request = p.ResumeRequest(run_id=RUN)
    assert pure(decide_resume, None, request, Facts(), NOW) == NeedFacts(view=True)


RETRIES: list[tuple[str, RunEntry | None, str]] = [
    ("failed", entry(S.FAILED, crashes=2), "AwaitingRetry"),
    ("timed out", entry(S.FAILED, "TimedOut"), "AwaitingRetry"),
    ("crashed", entry(S.CRASHED, crashes=4), "AwaitingRetry"),
    ("cancelled", entry(S.CANCELLED), "AwaitingRetry"),
    ("completed", entry(S.COMPLETED), "not_retryable"),
    ("running", entry(S.RUNNING, **HELD), "not_retryable"),
    ("queued", entry(S.SCHEDULED), "not_retryable"),
    ("unknown", None, "not_found"),
]


@pytest.mark.parametrize(("case", "run", "reply"), RETRIES, ids=[case[0] for case in RETRIES])
def test_a_retry(case: str, run: RunEntry | None, reply: str) -> None:
    verdict = decided(pure(decide_retry, run, p.RetryRequest(run_id=RUN), FACTS, NOW))
    assert reply_of(verdict.reply) == reply
    if reply == "AwaitingRetry":
        assert run is not None
        assert states(run, verdict.changes) == ["AwaitingRetry"]
        assert after(run, verdict.changes, NOW.mono).crashes == 0  # its budget starts over
        assert verdict.effects == (Publish(),)


PAUSES: list[tuple[str, RunEntry | None, list[str]]] = [
    ("past its timeout", entry(S.PAUSED, pause_deadline=NOW.wall - 1), ["Failed"]),
    ("before its timeout", entry(S.PAUSED, pause_deadline=NOW.wall + 1), []),
    ("resumed meanwhile", entry(S.SCHEDULED, pause_deadline=NOW.wall - 1), []),
    ("unknown", None, []),
]


@pytest.mark.parametrize(("case", "run", "recorded"), PAUSES, ids=[case[0] for case in PAUSES])
def test_a_pause_timeout(case: str, run: RunEntry | None, recorded: list[str]) -> None:
    verdict = decided(pure(decide_pause_expiry, run, NOW, 7))
    assert (states(run, verdict.changes) if run else []) == recorded
    assert all(change.leader_term == 7 for change in verdict.changes)


LATES: list[tuple[str, RunEntry | None, list[str]]] = [
    ("queued", entry(S.SCHEDULED, queued_at=NOW.wall - 20), ["Late"]),
    ("late already", entry(S.SCHEDULED, "Late"), []),
    ("claimed meanwhile", entry(S.PENDING, **HELD), []),
    ("unknown", None, []),
]


@pytest.mark.parametrize(("case", "run", "recorded"), LATES, ids=[case[0] for case in LATES])
def test_marking_late(case: str, run: RunEntry | None, recorded: list[str]) -> None:
    verdict = decided(pure(decide_mark_late, run, NOW, 7))
    assert (states(run, verdict.changes) if run else []) == recorded
    if recorded:
        assert verdict.changes[0].state.message == "not started 20 s after it was queued"
        assert after(run, verdict.changes, NOW.mono).published == run.published  # type: ignore[arg-type]


UNSTARTED: list[tuple[str, RunEntry | None, bool]] = [
    ("queued, unpublished", entry(S.SCHEDULED, queued_seq=3), True),
    ("queued, published", entry(S.SCHEDULED, queued_seq=3, published_seq=3), False),
    ("claimed", entry(S.PENDING, **HELD), False),
    ("unknown", None, False),
]


@pytest.mark.parametrize(("case", "run", "cancelled"), UNSTARTED,
                         ids=[case[0] for case in UNSTARTED])  # fmt: skip
def test_a_run_its_policies_will_not_start(
    case: str, run: RunEntry | None, cancelled: bool
) -> None:
    verdict = decided(pure(decide_cancel_unstarted, run, "skipped", NOW))
    assert verdict.reply is cancelled
    assert (states(run, verdict.changes) if run else []) == (["Cancelled"] if cancelled else [])


def test_facts_that_were_not_read_are_asked_for() -> None:
    assert Facts().view is UNREAD and Facts().stream_head is UNREAD
