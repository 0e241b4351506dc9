"""The client's requests over NATS: the wire protocol of docs/protocol.md and nothing else, so
any language can do the same."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy

from flowbus.broker import BrokerError, subjects, versions
from flowbus.broker import protocol as p
from flowbus.broker.connection import connect, nats_url
from flowbus.broker.identity import Signer
from flowbus.broker.nats_auth import credential_actor
from flowbus.broker.run_states import newest_state
from flowbus.client.model import ClientError, FinalState, NoOrchestrator, SubmittedRun
from flowbus.client.waiting import RunWaiters
from flowbus.engine.actors import current_actor
from flowbus.engine.errors import FlowbusError
from flowbus.engine.events import Event, FlowRunStateChanged, decode_event
from flowbus.engine.results import ResultMissing, decode_output
from flowbus.engine.states import StateType


async def _quiet(error: Exception) -> None:
    """Connection errors surface as exceptions of the calls they fail (not as log noise)."""


class NatsTransport:
    """A connection to flowbus over NATS (``$FLOWBUS_NATS_URL``, or a running ``flowbus up``)."""

    def __init__(self, url: str | None, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._nc: NatsClient | None = None
        self._waiters: RunWaiters | None = None
        self._signer = Signer.from_env()

    async def connect(self) -> None:
        """Connect, or fail at once with a clear error when no NATS server answers (a few
        quick attempts); once connected, reconnect for ever like the daemons."""
        if self._nc is None:
            url = self.url or nats_url()
            try:
                self._nc = await connect(
                    url, name="flowbus-client", max_reconnect_attempts=2, error_cb=_quiet
                )
            except BrokerError as exc:
                raise BrokerError(
                    f"{exc}; is flowbus up running (or FLOWBUS_NATS_URL set to the cluster)?"
                ) from exc
            self._nc.options["max_reconnect_attempts"] = -1

    async def close(self) -> None:
        if self._waiters is not None:
            await self._waiters.close()
            self._waiters = None
        if self._nc is not None:
            await self._nc.close()
            self._nc = None

    @property
    def nats(self) -> NatsClient:
        if self._nc is None:
            raise FlowbusError("the client is not connected: use `async with Client() as c:`")
        return self._nc

    async def _request(self, subject: str, payload: bytes, signed: bool = False) -> bytes:
        # Under a credential of flowbus auth, a request that names an actor is signed: the
        # orchestrator then records its user as the actor (broker/identity.py). The others
        # (a wait's recorded asks, reads) are not: they record nothing.
        signer = self._signer if signed else None
        headers = versions.with_version(signer.headers(subject, payload) if signer else None)
        try:
            answer = await self.nats.request(subject, payload, timeout=self.timeout,
                                             headers=headers)  # fmt: skip
        except NoRespondersError as exc:
            raise NoOrchestrator(
                "no_orchestrator", "no orchestrator is running (start one with `flowbus up`)"
            ) from exc
        except (NatsTimeoutError, TimeoutError) as exc:
            raise ClientError("timeout", f"no answer on {subject} within {self.timeout} s") from exc
        if answer.data.startswith(b'{"ok":false'):
            error = p.decode(p.ErrorReply, answer.data, tolerant=True).error
            raise ClientError(error.code, error.message, error.details)
        return bytes(answer.data)

    # --- runs -------------------------------------------------------------------------------

    def actor(self) -> str | None:
        """Who this client acts for: the caller's (``engine/actors.py``), else the name of its
        NATS credential (``nats:<user>``)."""
        found = current_actor()
        if found is None:
            found = credential_actor()
        return found

    async def submit(self, request: p.SubmitRequest) -> SubmittedRun:
        if request.actor is None:
            request = request.model_copy(update={"actor": self.actor()})
        answer = await self._request(subjects.SUBMIT, request.dump(), signed=True)
        reply = p.decode(p.SubmitReply, answer, tolerant=True)
        return SubmittedRun(reply.run_id, reply.name, reply.queue, reply.created)

    async def cancel(self, run_id: str) -> str:
        request = p.CancelRequest(run_id=run_id, actor=self.actor())
        data = await self._request(subjects.CANCEL, request.dump(), signed=True)
        return p.decode(p.CancelReply, data, tolerant=True).state

    async def resume(self, run_id: str, input: dict[str, Any] | None) -> str:
        request = p.ResumeRequest(run_id=run_id, input=input, actor=self.actor())
        data = await self._request(subjects.RESUME, request.dump(), signed=True)
        return p.decode(p.ResumeReply, data, tolerant=True).state

    async def retry(self, run_id: str) -> str:
        request = p.RetryRequest(run_id=run_id, actor=self.actor())
        data = await self._request(subjects.RETRY, request.dump(), signed=True)
        return p.decode(p.ResumeReply, data, tolerant=True).state

    async def wait(self, run_id: str) -> FinalState:
        """Until the run reaches a final state (one it is not queued again from) and the store
        holds it, so a read of the run right after agrees: one request, answered by an
        orchestrator once it committed that state (``flowbus.api.wait``)."""
        request = p.WaitRequest(run_id=run_id, wait=self.timeout / 2).dump()
        while True:
            try:
                data = await self._request(subjects.WAIT, request)
            except NoOrchestrator:
                return await self._wait_on_events(run_id)  # the events are all to go by
            except ClientError as exc:
                if exc.code == "not_found":  # not recorded yet: its events will say
                    return await self._wait_on_events(run_id)
                if exc.code != "timeout":
                    raise
                continue  # the orchestrator that held the wait went away: ask again
            reply = p.decode(p.WaitReply, data, tolerant=True)
            if reply.final:
                return FinalState(run_id, StateType(reply.state_type), reply.state_name,
                                  reply.message, reply.result)  # fmt: skip

    async def _wait_on_events(self, run_id: str) -> FinalState:
        """``wait`` from the events stream, for a run no orchestrator answers for: its final
        state event, once the store holds it (or when nobody can say). Any number of waits
        share one subscription (``waiting``)."""
        if self._waiters is None:
            self._waiters = RunWaiters(self.nats.jetstream())
        skip: frozenset[str] = frozenset()
        while True:
            event = await self._waiters.wait(run_id, skip)
            if await self._recorded(event):
                break
            skip |= {str(event.id)}  # not what the store holds: somebody else published it
        state = event.state
        result = event.result if isinstance(event, FlowRunStateChanged) else None
        return FinalState(run_id, state.type, state.name, state.message, result)

    async def _recorded(self, event: Any) -> bool:
        """Wait until the store holds the run up to ``event``; whether it holds that very event
        (True too when no orchestrator answers: the event is all there is to go by)."""
        # Each ask waits well inside the client's request timeout; asked again until recorded.
        request = p.RecordedRequest(run_id=str(event.stream_id), seq=event.seq,
                                    wait=self.timeout / 2, event_id=str(event.id))  # fmt: skip
        while True:
            try:
                data = await self._request(subjects.RECORDED, request.dump())
            except NoOrchestrator:
                return True
            reply = p.decode(p.RecordedReply, data, tolerant=True)
            if reply.recorded:
                return reply.event_id in (None, str(event.id))

    async def result(self, run_id: str) -> Any:
        js = self.nats.jetstream()
        skip: frozenset[str] = frozenset()
        while True:
            newest = await newest_state(js, run_id, skip)
            if newest is None or await self._recorded(newest.event):
                break
            skip |= {str(newest.event.id)}  # not what the store holds
        if newest is None:
            raise ClientError("not_found", f"no run {run_id} on the events stream")
        event = newest.event
        if event.state.type is not StateType.COMPLETED:
            raise ClientError("not_completed", f"run {run_id} is {event.state.name}: no result")
        output = event.output if isinstance(event, FlowRunStateChanged) else None
        if output is None:
            return None
        try:
            return await asyncio.to_thread(decode_output, output)
        except ResultMissing as exc:
            raise ClientError("result_unavailable", str(exc)) from exc

    async def events(
        self, run_id: str | None, types: list[str] | None, since: datetime | None
    ) -> AsyncGenerator[Event, None]:
        stream = run_id or "*"
        subject = f"flowbus.event.{stream}.>"
        if since is not None:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since
            )
        elif run_id is not None:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        wanted = set(types) if types else None
        js = self.nats.jetstream()
        subscription = await js.subscribe(
            subject, stream=subjects.EVENTS_STREAM, ordered_consumer=True, config=config
        )
        try:
            async for message in subscription.messages:
                try:
                    event = decode_event(message.data, tolerant=True)
                except ValueError:
                    continue  # the recorder dead-letters it; a reader just skips it
                if wanted is None or event.type in wanted:
                    yield event
        finally:
            with contextlib.suppress(Exception):  # a closed connection has nothing to undo
                await subscription.unsubscribe()

    # --- queues, agents, deployments, limits, custom events ----------------------------------

    async def queues(self) -> list[p.QueueInfo]:
        return p.decode(
            p.QueueList, await self._request(subjects.QUEUES, b""), tolerant=True
        ).queues

    async def update_queue(self, update: p.QueueUpdate) -> p.QueueInfo:
        if update.actor is None:
            update = update.model_copy(update={"actor": self.actor()})
        data = await self._request(subjects.QUEUE_UPDATE, update.dump(), signed=True)
        return p.decode(p.QueueUpdated, data, tolerant=True)

    async def deployments(self) -> list[dict[str, Any]]:
        data = await self._request(subjects.DEPLOYMENTS, b"")
        return p.decode(p.DeploymentList, data, tolerant=True).deployments

    async def agents(self) -> list[p.AgentInfo]:
        return p.decode(
            p.AgentList, await self._request(subjects.AGENTS, b""), tolerant=True
        ).agents

    async def limits(self) -> list[p.LimitInfo]:
        return p.decode(
            p.LimitList, await self._request(subjects.LIMITS, b""), tolerant=True
        ).limits

    async def emit(self, event: p.CustomEvent) -> p.CustomEvent:
        await self.nats.jetstream().publish(
            subjects.custom_subject(event.type),
            event.dump(),
            headers=versions.with_version({"Nats-Msg-Id": event.id}),
        )
        return event

    async def automations_changed(self) -> bool:
        try:
            await self.nats.request(subjects.AUTOMATIONS_CHANGED, b"", timeout=5)
        except (NoRespondersError, NatsTimeoutError):
            return False
        return True


__all__ = ["NatsTransport"]
