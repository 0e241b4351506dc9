"""Cancel and pause: a cancel asks the run's holder to stop it (or records it at once when
nobody holds it, or its holder does not answer); a resume queues a Paused run again with the
validated input its pause waits for; a pause that times out fails the run; a retry queues a
Failed, Crashed, Cancelled or TimedOut run again as a new attempt."""

from __future__ import annotations

import time
from typing import Any

import structlog
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import ValidationError

from flowbus.agents.ledger import RunEntry
from flowbus.agents.orchestrator_core import OrchestratorCore
from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.engine.records import EventRecord
from flowbus.engine.schema_model import model_from_schema
from flowbus.engine.states import (
    AwaitingRetry,
    Cancelled,
    Cancelling,
    Failed,
    Scheduled,
    StateType,
)

log = structlog.get_logger("flowbus.orchestrator")
#: The final states a run can be retried from (TimedOut is a Failed state).
RETRYABLE = frozenset({StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
S = StateType


class Controls(OrchestratorCore):
    """Cancel, resume, and the timeout of a pause."""

    async def resume(self, request: p.ResumeRequest) -> bytes:
        """Queue a Paused run again; its pause returns the (validated) input when it runs."""

        async def decide(entry: RunEntry | None) -> tuple[bytes, list[EventRecord]]:
            if entry is None or entry.state is not S.PAUSED:
                view = await self.store.get_flow_run(request.run_id)
                if view is None:
                    return p.error_reply("not_found", f"no run {request.run_id}"), []
                return p.error_reply(
                    "not_paused", f"run {request.run_id} is {view.state_name}, not Paused"
                ), []
            given = request.input
            schema = entry.pause_input_schema
            if schema is not None:
                try:
                    given = (
                        model_from_schema(schema)
                        .model_validate(given or {})
                        .model_dump(mode="json")
                    )
                except ValidationError as exc:
                    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                              for e in exc.errors()]  # fmt: skip
                    message = f"invalid input for run {entry.name}:\n{exc}"
                    return p.error_reply("invalid_input", message, errors), []
            elif given:
                return p.error_reply(
                    "invalid_input", f"the pause of run {entry.name} takes no input"
                ), []
            resumed = Scheduled(message="resumed")
            record = self.ledger.record_state(
                entry, resumed, pause_key=entry.pause_key, resume_input=given
            )
            entry.published = False
            return p.ResumeReply(run_id=entry.run_id, state="Scheduled").dump(), [record]

        reply = await self.ledger.transact(request.run_id, decide)
        await self._dispatch_if_queued_again(request.run_id)
        return reply

    async def _expire_pause(self, run_id: str) -> None:
        async def decide(entry: RunEntry | None) -> tuple[None, list[EventRecord]]:
            if entry is None or entry.state is not S.PAUSED or entry.pause_deadline > time.time():
                return None, []
            message = f"not resumed in time (paused at {entry.pause_key})"
            return None, [self.ledger.record_state(entry, Failed(message=message), **self._term())]

        await self.ledger.transact(run_id, decide)

    async def retry(self, request: p.RetryRequest) -> bytes:
        """Queue a Failed, Crashed, Cancelled or TimedOut run again as a new attempt."""

        async def decide(entry: RunEntry | None) -> tuple[bytes, list[EventRecord]]:
            if entry is None:
                view = await self.store.get_flow_run(request.run_id)
                if view is None:
                    return p.error_reply("not_found", f"no run {request.run_id}"), []
                return p.error_reply("not_retryable", "only runs of deployments can be retried"), []
            if entry.state not in RETRYABLE:
                return p.error_reply(
                    "not_retryable",
                    f"run {entry.name} is {entry.state_name}: only a Failed, Crashed, Cancelled "
                    "or TimedOut run can be retried",
                ), []
            again = AwaitingRetry(message=f"retried on request (it was {entry.state_name})")
            record = self.ledger.record_state(entry, again, retried=True)
            entry.published = False
            return p.ResumeReply(run_id=entry.run_id, state=again.name).dump(), [record]

        reply = await self.ledger.transact(request.run_id, decide)
        await self._dispatch_if_queued_again(request.run_id)
        return reply

    async def list_deployments(self, _: object = None) -> bytes:
        """Every deployment, with its parameters' JSON schema (read from the store)."""
        deployments = await self.store.list_deployments()
        return p.DeploymentList(deployments=[d.to_dict() for d in deployments]).dump()

    async def recorded(self, request: p.RecordedRequest) -> bytes:
        """Answer once the store holds the run's events up to ``request.seq``: a client that
        saw a final state on the events stream reads the same from the store after this."""
        head = await self.recorded_waits.wait(request.run_id, request.seq, request.wait)
        return p.RecordedReply(head=head, recorded=head >= request.seq).dump()

    async def cancel(self, request: p.CancelRequest) -> bytes:
        ask: dict[str, Any] = {}

        async def decide(entry: RunEntry | None) -> tuple[bytes, list[EventRecord]]:
            if entry is None:
                view = await self.store.get_flow_run(request.run_id)
                if view is None:
                    return p.error_reply("not_found", f"no run {request.run_id}"), []
                if view.state_type in {t.value for t in S if t.is_terminal}:
                    return p.CancelReply(run_id=view.id, state=view.state_name).dump(), []
                return p.error_reply(
                    "not_cancellable", "only runs of deployments can be cancelled"
                ), []
            if entry.state.is_terminal or entry.state is S.CANCELLING:
                return p.CancelReply(run_id=entry.run_id, state=entry.state_name).dump(), []
            if entry.held and not entry.lease_expired(time.monotonic()):
                ask.update(agent=entry.agent, attempt=entry.attempt)
                return b"", []
            cancelled = Cancelled(message="cancelled on request")
            record = self.ledger.record_state(entry, cancelled, close=True)
            return p.CancelReply(run_id=entry.run_id, state="Cancelled").dump(), [record]

        reply = await self.ledger.transact(request.run_id, decide)
        if not ask:
            return reply
        try:
            answer = await self.client.request(
                subjects.agent_cancel_subject(ask["agent"]),
                p.AgentCancel(run_id=request.run_id, attempt=ask["attempt"]).dump(),
                timeout=1.0,
            )
            if p.decode(p.Ok, answer.data):
                return p.CancelReply(run_id=request.run_id, state="Cancelling").dump()
        except (NoRespondersError, NatsTimeoutError, TimeoutError, p.ProtocolError) as exc:
            log.warning("agent did not take a cancel", agent=ask["agent"], error=repr(exc))
        return await self._cancel_without_agent(request.run_id, ask["attempt"])

    async def _cancel_without_agent(self, run_id: str, attempt: int) -> bytes:
        """The holder cannot be reached: fence it and record the cancel here."""

        async def decide(entry: RunEntry | None) -> tuple[bytes, list[EventRecord]]:
            if entry is None or entry.state.is_terminal or entry.attempt != attempt:
                state = entry.state_name if entry is not None else "unknown"
                return p.CancelReply(run_id=run_id, state=state).dump(), []
            message = f"cancelled on request; agent {entry.agent} did not answer"
            records = [self.ledger.record_state(entry, Cancelling(message=message), close=True)]
            records.append(self.ledger.record_state(entry, Cancelled(message=message)))
            return p.CancelReply(run_id=run_id, state="Cancelled").dump(), records

        return await self.ledger.transact(run_id, decide)
