"""The agent's choices about a run request, as pure decisions: what to do with the message
(ack it away, put it back, dead-letter it) and what to tell the orchestrator (release the
run as crashed, handed back or cancelled), after a refused claim or at a run's end.

A JetStream ack proves nothing about who owns a run (the store fences by attempt), so these
choices are about the message only: ack when nobody needs it again, nak when someone may
(the run's holder, or this agent once an orchestrator answers), term (dead-letter) when it
can never be run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flowbus.broker import protocol as p

Settlement = Literal["ack", "nak", "dead_letter", "leave"]
ReleaseOutcome = Literal["crashed", "handed_back", "cancelled"]
#: How an execution ended for its agent (``agents/execution.py``).
Outcome = Literal["finished", "handed_back", "lost", "crashed", "cancelled"]
Isolation = Literal["thread", "process"]
#: A request put back because no orchestrator could answer comes back after this.
RETRY_DELAY = 1.0


@dataclass(frozen=True, slots=True)
class Settle:
    """What to do with a run request's message, and what to tell the orchestrator first."""

    message: Settlement
    #: For ``nak``: when JetStream delivers it again (None: at once).
    delay: float | None = None
    #: For ``dead_letter``: why.
    reason: str = ""
    #: Release the run first, with this outcome and message.
    release: ReleaseOutcome | None = None
    why: str = ""
    #: A cancelled in-process run whose thread is still blocked: counted as abandoned.
    abandon: bool = False


def after_refusal(refusal: p.ClaimRefusal, jitter: float = 0.0) -> Settle:
    """A claim refused: the request is dead-lettered when its run cannot exist, put back when
    the answer may change (no orchestrator could decide; the run's holder has not started it
    and may need this very request), else acked away (finished, cancelled, held by a live
    agent).

    A request put back for its holder comes back after ``RETRY_DELAY`` stretched by ``jitter``
    (0 to 1, drawn by the caller): without it, the agent that put it back looks again exactly
    when it returns, one tick later, and takes it every time before the holder can."""
    if refusal.reason == "unknown":
        return Settle("dead_letter", reason=f"claim refused: {refusal.message}")
    if refusal.reason == "starting":
        return Settle("nak", delay=RETRY_DELAY * (1 + jitter))
    if refusal.reason == "unavailable":
        return Settle("nak", delay=RETRY_DELAY)
    return Settle("ack")


def after_run(outcome: Outcome, isolation: Isolation, agent: str, cancel_deadline: float) -> Settle:
    """A run's execution ended: finished (its final state is published: ack), handed back
    (nak: it comes back to a queue; a child process's hand-back is recorded by the
    orchestrator), crashed (its process died: the orchestrator records it), cancelled (the
    agent stopped it: the orchestrator records Cancelled), or lost (another attempt holds
    it: the request is not this agent's to settle)."""
    if outcome == "finished":
        return Settle("ack")
    if outcome == "handed_back":
        if isolation == "process":
            return Settle("nak", release="handed_back", why=f"handed back by agent {agent}")
        return Settle("nak")
    if outcome == "crashed":
        return Settle("ack", release="crashed", why="its flow run process died")
    if outcome == "cancelled":
        if isolation == "thread":
            why = (
                f"cancelled on request; still blocked {cancel_deadline:g} s later, thread abandoned"
            )
            return Settle("ack", release="cancelled", why=why, abandon=True)
        return Settle("ack", release="cancelled",
                      why="cancelled on request; its flow run process was stopped")  # fmt: skip
    return Settle("leave")


#: The agent failed to run a run it held (a bug, never the flow's own failure).
AGENT_FAILED = Settle("ack", release="crashed", why="the agent failed to run it")

__all__ = ["AGENT_FAILED", "Outcome", "Settle", "after_refusal", "after_run"]
