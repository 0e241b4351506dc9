"""Cancel, resume and retry (``flowbus.api.cancel``, ``.resume``, ``.retry``). A cancel of a
run a live agent holds asks that agent (``flowbus.agent.<name>.cancel``); with no agent
listening, NATS says so at once and the cancel is recorded here, fencing the holder. The
decisions are ``decisions.controls``'."""

from __future__ import annotations

import structlog
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from flowbus.agents.decisions.controls import (
    Answer,
    CancelAnswer,
    decide_cancel,
    decide_cancel_without_agent,
    decide_resume,
    decide_retry,
)
from flowbus.agents.decisions.model import AskAgentToCancel
from flowbus.agents.orchestrator.executor import Executor
from flowbus.broker import protocol as p
from flowbus.broker import subjects, versions
from flowbus.engine.audit import audit_record

log = structlog.get_logger("flowbus.orchestrator")
#: How long the holder of a run has to take a cancel before it is recorded without it.
ASK_TIMEOUT = 1.0


class Controls:
    """Answers cancels, resumes and retries."""

    def __init__(self, executor: Executor, client: Client) -> None:
        self.executor = executor
        self.client = client

    async def cancel(self, request: p.CancelRequest) -> CancelAnswer:
        verdict, _ = await self.executor.take(
            request.run_id, lambda entry, facts, now: decide_cancel(entry, request, facts, now)
        )
        asks = [effect for effect in verdict.effects if isinstance(effect, AskAgentToCancel)]
        if not asks:
            return verdict.reply
        ask = asks[0]
        if request.actor:  # its agent records the cancel: who asked is recorded here
            entry = audit_record("run.cancel_requested", request.run_id, request.actor,
                                 {"agent": ask.agent, "attempt": ask.attempt})  # fmt: skip
            await self.executor.store.append([entry])
        if await self._ask(request.run_id, ask):
            return p.CancelReply(run_id=request.run_id, state="Cancelling")
        fallback, _ = await self.executor.take(
            request.run_id,
            lambda entry, facts, now: decide_cancel_without_agent(
                entry, request.run_id, ask.attempt, now
            ),
        )
        return fallback.reply

    async def cancel_run(self, run_id: str) -> CancelAnswer:
        """Cancel a run as ``flowbus.api.cancel`` does (the overlap policy ``cancel``)."""
        return await self.cancel(p.CancelRequest(run_id=run_id))

    async def _ask(self, run_id: str, ask: AskAgentToCancel) -> bool:
        """Whether the holder took the cancel (it records Cancelling, then Cancelled)."""
        try:
            answer = await self.client.request(
                subjects.agent_cancel_subject(ask.agent),
                p.AgentCancel(run_id=run_id, attempt=ask.attempt).dump(),
                timeout=ASK_TIMEOUT,
                headers=versions.with_version(),
            )
            return bool(p.decode(p.Ok, answer.data, tolerant=True))
        except (NoRespondersError, NatsTimeoutError, TimeoutError, p.ProtocolError) as exc:
            log.warning("agent did not take a cancel", agent=ask.agent, error=repr(exc))
            return False

    async def resume(self, request: p.ResumeRequest) -> Answer:
        """Queue a Paused run again; its pause returns the (validated) input when it runs."""
        verdict, _ = await self.executor.take(
            request.run_id, lambda entry, facts, now: decide_resume(entry, request, facts, now)
        )
        return verdict.reply

    async def retry(self, request: p.RetryRequest) -> Answer:
        """Queue a Failed, Crashed, Cancelled or TimedOut run again as a new attempt."""
        verdict, _ = await self.executor.take(
            request.run_id, lambda entry, facts, now: decide_retry(entry, request, facts, now)
        )
        return verdict.reply


__all__ = ["Controls"]
