"""The agent's choice of ack, nak or dead letter for a run request, and what it tells the
orchestrator, after a refused claim and at a run's end: every case of the table."""

from __future__ import annotations

from typing import Any

import pytest

from flowbus.agents.decisions.agent import AGENT_FAILED, Settle, after_refusal, after_run
from flowbus.broker import protocol as p

REFUSALS = [
    ("unknown", Settle("dead_letter", reason="claim refused: gone")),
    ("unavailable", Settle("nak", delay=1.0)),
    ("starting", Settle("nak", delay=1.0)),  # its holder may need the request back
    ("finished", Settle("ack")),
    ("cancelled", Settle("ack")),
    ("leased", Settle("ack")),
    ("illegal", Settle("ack")),
]


@pytest.mark.parametrize(("reason", "settle"), REFUSALS, ids=[r for r, _ in REFUSALS])
def test_after_a_refused_claim(reason: str, settle: Settle) -> None:
    assert after_refusal(p.ClaimRefusal(reason=reason, message="gone")) == settle


def test_a_request_put_back_for_its_holder_returns_at_a_jittered_time() -> None:
    """Not in step with the agent that put it back (which looks again each tick)."""
    starting = p.ClaimRefusal(reason="starting", message="granted to agent-1")
    assert after_refusal(starting, 0.5) == Settle("nak", delay=1.5)
    unavailable = p.ClaimRefusal(reason="unavailable", message="no leader")
    assert after_refusal(unavailable, 0.5) == Settle("nak", delay=1.0)


RUN_ENDS: list[tuple[Any, Any, str, Any, bool]] = [
    # (outcome, isolation, message, release, abandoned)
    ("finished", "thread", "ack", None, False),
    ("finished", "process", "ack", None, False),
    ("handed_back", "thread", "nak", None, False),  # its engine recorded Scheduled itself
    ("handed_back", "process", "nak", "handed_back", False),
    ("crashed", "process", "ack", "crashed", False),
    ("cancelled", "thread", "ack", "cancelled", True),  # its thread blocked past the deadline
    ("cancelled", "process", "ack", "cancelled", False),
    ("lost", "thread", "leave", None, False),  # another attempt holds it
    ("lost", "process", "leave", None, False),
]


@pytest.mark.parametrize(("outcome", "isolation", "message", "release", "abandoned"), RUN_ENDS)
def test_at_a_runs_end(
    outcome: Any, isolation: Any, message: str, release: Any, abandoned: bool
) -> None:
    settle = after_run(outcome, isolation, "agent-1", 5.0)
    assert (settle.message, settle.release, settle.abandon) == (message, release, abandoned)
    if settle.message == "nak":
        assert settle.delay is None  # back to the queue at once
    if release == "cancelled" and isolation == "thread":
        assert "still blocked 5 s later" in settle.why


def test_an_agent_that_failed_to_run_a_run_releases_it_crashed() -> None:
    assert (AGENT_FAILED.message, AGENT_FAILED.release) == ("ack", "crashed")
