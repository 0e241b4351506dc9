"""Cancel, resume, retry, and the timers on waiting runs (a pause's timeout, Late), as pure
decisions.

A cancel of a run nobody holds is recorded at once; a run held by a live agent is cancelled
by asking that agent (``AskAgentToCancel``), and recorded here only if the agent cannot be
reached. A resume queues a Paused run again with the validated input its pause waits for; a
retry queues a Failed, Crashed, Cancelled or TimedOut run again as a new attempt.
"""

from __future__ import annotations

from pydantic import ValidationError

from flowbus.agents.decisions.model import (
    UNREAD,
    AskAgentToCancel,
    Change,
    Decision,
    Facts,
    NeedFacts,
    Now,
    Publish,
    Resume,
)
from flowbus.agents.run_entry import RunEntry
from flowbus.broker import protocol as p
from flowbus.engine.schema_model import model_from_schema
from flowbus.engine.states import (
    TERMINAL_TYPES,
    AwaitingRetry,
    Cancelled,
    Cancelling,
    Failed,
    Late,
    Scheduled,
    StateType,
)

S = StateType
#: The final states a run can be retried from (TimedOut is a Failed state).
RETRYABLE = frozenset({S.FAILED, S.CRASHED, S.CANCELLED})
CancelAnswer = p.CancelReply | p.ErrorReply | None
Answer = p.ResumeReply | p.ErrorReply


def decide_cancel(
    entry: RunEntry | None, request: p.CancelRequest, facts: Facts, now: Now
) -> Decision[CancelAnswer] | NeedFacts:
    """Cancel the run: recorded Cancelled at once when nobody holds it (or its holder's lease
    ran out); its holder is asked when a live agent holds it (the reply is then None: the
    agent's answer decides it). A run that is not a deployment's cannot be cancelled."""
    if entry is None:
        if facts.view is UNREAD:
            return NeedFacts(view=True)
        if facts.view is None:
            return Decision(p.error("not_found", f"no run {request.run_id}"))
        if facts.view.state_type in {t.value for t in TERMINAL_TYPES}:
            return Decision(p.CancelReply(run_id=facts.view.id, state=facts.view.state_name))
        return Decision(p.error("not_cancellable", "only runs of deployments can be cancelled"))
    if entry.state.is_terminal or entry.state is S.CANCELLING:
        return Decision(p.CancelReply(run_id=entry.run_id, state=entry.state_name))
    if entry.held and not entry.lease_expired(now.mono):
        assert entry.agent is not None
        return Decision(None, effects=(AskAgentToCancel(entry.agent, entry.attempt),))
    cancelled = Change(Cancelled(message="cancelled on request", timestamp=now.iso), close=True,
                       actor=request.actor)  # fmt: skip
    return Decision(p.CancelReply(run_id=entry.run_id, state="Cancelled"), (cancelled,))


def decide_cancel_without_agent(
    entry: RunEntry | None, run_id: str, attempt: int, now: Now
) -> Decision[p.CancelReply]:
    """The holder of ``attempt`` could not be reached: fence it and record the cancel here."""
    if entry is None or entry.state.is_terminal or entry.attempt != attempt:
        state = entry.state_name if entry is not None else "unknown"
        return Decision(p.CancelReply(run_id=run_id, state=state))
    message = f"cancelled on request; agent {entry.agent} did not answer"
    changes = (
        Change(Cancelling(message=message, timestamp=now.iso), close=True),
        Change(Cancelled(message=message, timestamp=now.iso)),
    )
    return Decision(p.CancelReply(run_id=run_id, state="Cancelled"), changes)


def decide_cancel_unstarted(entry: RunEntry | None, message: str, now: Now) -> Decision[bool]:
    """Cancel a run its deployment's policies will not start (a schedule paused, an overlap
    skipped, a concurrency limit's collision strategy ``cancel``): only while it is still
    Scheduled and its request unpublished."""
    if entry is None or entry.state is not S.SCHEDULED or entry.published:
        return Decision(False)
    return Decision(True, (Change(Cancelled(message=message, timestamp=now.iso)),))


def decide_resume(
    entry: RunEntry | None, request: p.ResumeRequest, facts: Facts, now: Now
) -> Decision[Answer] | NeedFacts:
    """Queue a Paused run again; its pause returns the input (validated against the schema
    the pause declared) when the run executes again."""
    if entry is None or entry.state is not S.PAUSED:
        if facts.view is UNREAD:
            return NeedFacts(view=True)
        if facts.view is None:
            return Decision(p.error("not_found", f"no run {request.run_id}"))
        state = facts.view.state_name
        return Decision(p.error("not_paused", f"run {request.run_id} is {state}, not Paused"))
    given = request.input
    schema = entry.pause_input_schema
    if schema is not None:
        try:
            validated = model_from_schema(schema).model_validate(given or {})
        except ValidationError as exc:
            message = f"invalid input for run {entry.name}:\n{exc}"
            details = p.validation_details(exc.errors())
            return Decision(p.error("invalid_input", message, details))
        given = validated.model_dump(mode="json")
    elif given:
        return Decision(p.error("invalid_input", f"the pause of run {entry.name} takes no input"))
    resumed = Change(Scheduled(message="resumed", timestamp=now.iso),
                     resume=Resume(entry.pause_key, given), actor=request.actor)  # fmt: skip
    reply = p.ResumeReply(run_id=entry.run_id, state="Scheduled")
    return Decision(reply, (resumed,), (Publish(),))


def decide_retry(
    entry: RunEntry | None, request: p.RetryRequest, facts: Facts, now: Now
) -> Decision[Answer] | NeedFacts:
    """Queue a Failed, Crashed, Cancelled or TimedOut run of a deployment again, as a new
    attempt (its crash budget starts over)."""
    if entry is None:
        if facts.view is UNREAD:
            return NeedFacts(view=True)
        if facts.view is None:
            return Decision(p.error("not_found", f"no run {request.run_id}"))
        return Decision(p.error("not_retryable", "only runs of deployments can be retried"))
    if entry.state not in RETRYABLE:
        return Decision(
            p.error(
                "not_retryable",
                f"run {entry.name} is {entry.state_name}: only a Failed, Crashed, Cancelled "
                "or TimedOut run can be retried",
            )
        )
    again = AwaitingRetry(message=f"retried on request (it was {entry.state_name})",
                          timestamp=now.iso)  # fmt: skip
    reply = p.ResumeReply(run_id=entry.run_id, state=again.name)
    return Decision(reply, (Change(again, retried=True, actor=request.actor),), (Publish(),))


def decide_pause_expiry(entry: RunEntry | None, now: Now, term: int | None) -> Decision[None]:
    """A Paused run not resumed by its pause's timeout fails."""
    if entry is None or entry.state is not S.PAUSED or entry.pause_deadline > now.wall:
        return Decision(None)
    message = f"not resumed in time (paused at {entry.pause_key})"
    return Decision(None, (Change(Failed(message=message, timestamp=now.iso), leader_term=term),))


def decide_mark_late(entry: RunEntry | None, now: Now, term: int | None) -> Decision[None]:
    """A queued run not claimed ``late_after`` seconds after it was queued is renamed Late (the
    janitor decides when; this records it once)."""
    if entry is None or entry.state is not S.SCHEDULED or entry.state_name == "Late":
        return Decision(None)
    message = f"not started {now.wall - entry.queued_at:.0f} s after it was queued"
    return Decision(None, (Change(Late(message=message, timestamp=now.iso), leader_term=term),))


__all__ = [
    "RETRYABLE",
    "decide_cancel",
    "decide_cancel_unstarted",
    "decide_cancel_without_agent",
    "decide_mark_late",
    "decide_pause_expiry",
    "decide_resume",
    "decide_retry",
]
