"""The Python client for services: submit runs, wait for them, cancel them, follow their events.

    async with flowbus.Client() as client:
        run = await client.submit("etl-flow/daily", parameters={"url": url}, idempotency_key=key)
        final = await client.wait(run.run_id)
        async for event in client.events(run_id=run.run_id, types=["flow_run.state"]):
            ...

It speaks the wire protocol of docs/protocol.md and nothing else: any language can do the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy

from flowbus.broker import BrokerError, subjects
from flowbus.broker import protocol as p
from flowbus.broker.connection import connect, nats_url
from flowbus.engine.errors import FlowbusError
from flowbus.engine.event_types import EventType
from flowbus.engine.events import Event, FlowRunCreated, FlowRunStateChanged, decode_event
from flowbus.engine.results import ResultMissing, decode_output
from flowbus.engine.states import TERMINAL_TYPES, StateType
from flowbus.waiting import RunWaiters, last_state


class ClientError(FlowbusError):
    """The orchestrator refused a request; ``code`` says why (see docs/protocol.md)."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


async def _quiet(error: Exception) -> None:
    """Connection errors surface as exceptions of the calls they fail (not as log noise)."""


class NoOrchestrator(ClientError):
    """Nothing answers on the orchestrator's subjects: is ``flowbus up`` running?"""


@dataclass(frozen=True)
class SubmittedRun:
    run_id: str
    name: str
    queue: str
    #: False when the idempotency key named a run submitted earlier (this is that run).
    created: bool


@dataclass(frozen=True)
class FinalState:
    """A run's last state, as ``wait`` reports it."""

    run_id: str
    type: StateType
    name: str
    message: str | None
    result: str | None

    @property
    def completed(self) -> bool:
        return self.type is StateType.COMPLETED


class Client:
    """A connection to flowbus over NATS (``$FLOWBUS_NATS_URL``, or a running ``flowbus up``),
    or, given ``api_url`` (and ``api_token``), over a server's HTTP API: the same methods for
    a machine that reaches the team's server but not its NATS (``flowbus.http_transport``)."""

    def __new__(cls, *args: Any, api_url: str | None = None, **options: Any) -> Client:
        if api_url is not None and cls is Client:
            from flowbus.http_transport import HttpClient

            return object.__new__(HttpClient)
        return object.__new__(cls)

    def __init__(
        self,
        nats_url: str | None = None,
        timeout: float = 10.0,
        api_url: str | None = None,
        api_token: str | None = None,
    ) -> None:
        self.url = nats_url
        self.timeout = timeout
        self._nc: NatsClient | None = None
        self._waiters: RunWaiters | None = None

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

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

    async def _request(self, subject: str, payload: bytes) -> bytes:
        try:
            answer = await self.nats.request(subject, payload, timeout=self.timeout)
        except NoRespondersError as exc:
            raise NoOrchestrator(
                "no_orchestrator", "no orchestrator is running (start one with `flowbus up`)"
            ) from exc
        except (NatsTimeoutError, TimeoutError) as exc:
            raise ClientError("timeout", f"no answer on {subject} within {self.timeout} s") from exc
        if answer.data.startswith(b'{"ok":false'):
            error = p.decode(p.ErrorReply, answer.data).error
            raise ClientError(error.code, error.message, error.details)
        return bytes(answer.data)

    # --- runs -------------------------------------------------------------------------------

    async def submit(
        self,
        deployment: str,
        parameters: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        tags: Sequence[str] = (),
        scheduled_time: datetime | None = None,
        schedule_id: int | None = None,
    ) -> SubmittedRun:
        """Queue a run of ``deployment``; bad parameters raise ``ClientError`` (code
        ``invalid_parameters``, pydantic's message) and nothing is queued. With
        ``scheduled_time`` (timezone-aware) the run waits, Scheduled, until that time."""
        request = p.SubmitRequest(
            deployment=deployment,
            parameters=parameters or {},
            idempotency_key=idempotency_key,
            tags=list(tags),
            scheduled_time=scheduled_time,
            schedule_id=schedule_id,
        )
        reply = p.decode(p.SubmitReply, await self._request(subjects.SUBMIT, request.dump()))
        return SubmittedRun(reply.run_id, reply.name, reply.queue, reply.created)

    async def cancel(self, run_id: str) -> str:
        """Cancel a run; returns its state after the request (Cancelled, or Cancelling while
        its agent stops it, or the final state it already had)."""
        data = await self._request(subjects.CANCEL, p.CancelRequest(run_id=run_id).dump())
        return p.decode(p.CancelReply, data).state

    async def wait(self, run_id: str, timeout: float | None = None) -> FinalState:  # noqa: ASYNC109
        """Wait until the run reaches a final state (one it is not queued again from) and the
        store holds it, so a read of the run right after (``runs show``, the API) agrees.

        Any number of waits share one subscription (``flowbus.waiting``)."""
        if self._waiters is None:
            self._waiters = RunWaiters(self.nats.jetstream())
        event = await asyncio.wait_for(self._until_recorded(run_id), timeout)
        state = event.state
        result = getattr(event, "result", None)
        return FinalState(run_id, state.type, state.name, state.message, result)

    async def _until_recorded(self, run_id: str) -> Any:
        assert self._waiters is not None
        event = await self._waiters.wait(run_id)
        # Each ask waits well inside the client's request timeout; asked again until recorded.
        request = p.RecordedRequest(run_id=run_id, seq=event.seq, wait=self.timeout / 2)
        while True:
            try:
                reply = p.decode(p.RecordedReply, await self._request(subjects.RECORDED,
                                                                     request.dump()))  # fmt: skip
            except NoOrchestrator:
                return event  # nobody records (yet): the event is all there is to go by
            if reply.recorded:
                return event

    async def result(self, run_id: str) -> Any:
        """The value a Completed run's flow returned: the JSON its Completed event carries, or,
        for a result that is not JSON, the exact value read from result storage (which must be
        reachable from here: ``FLOWBUS_RESULT_STORAGE`` shared between hosts).

        ``ClientError`` "not_found" (no such run on the events stream), "not_completed", or
        "result_unavailable" (stored, and not readable from here)."""
        event = await last_state(self.nats.jetstream(), run_id)
        if event is None:
            raise ClientError("not_found", f"no run {run_id} on the events stream")
        if event.state.type is not StateType.COMPLETED:
            raise ClientError("not_completed", f"run {run_id} is {event.state.name}: no result")
        output = getattr(event, "output", None)
        if output is None:
            return None
        try:
            return await asyncio.to_thread(decode_output, output)
        except ResultMissing as exc:
            raise ClientError("result_unavailable", str(exc)) from exc

    async def ends_run(self, event: Event) -> bool:
        """Whether a state event is its run's last: final, and not Crashed then queued again
        (which a run whose flow has retries left is, at once)."""
        if not isinstance(event, FlowRunCreated | FlowRunStateChanged):
            return False
        if event.state.type not in TERMINAL_TYPES:
            return False
        if event.state.type is not StateType.CRASHED:
            return True
        return await self.next_state(str(event.stream_id), event.seq) is None

    async def next_state(self, run_id: str, after_seq: int, timeout: float = 1.0) -> Event | None:  # noqa: ASYNC109
        """The run's next state event after ``after_seq``, if one comes within ``timeout``."""

        async def first() -> Event | None:
            stream = self.events(run_id=run_id, types=[EventType.FLOW_RUN_STATE])
            async with contextlib.aclosing(stream) as events:
                async for event in events:
                    if event.seq > after_seq:
                        return event
            return None

        try:
            return await asyncio.wait_for(first(), timeout)
        except TimeoutError:
            return None

    async def events(
        self,
        run_id: str | None = None,
        types: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Events as they happen (from the start of a run's stream when ``run_id`` is given,
        else from ``since``, else from now), in order, as the typed models of
        ``flowbus.engine.events``. The iteration does not end by itself."""
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
                    event = decode_event(message.data)
                except ValueError:
                    continue  # the recorder dead-letters it; a reader just skips it
                if wanted is None or event.type in wanted:
                    yield event
        finally:
            with contextlib.suppress(Exception):  # a closed connection has nothing to undo
                await subscription.unsubscribe()

    # --- queues and agents ------------------------------------------------------------------

    async def queues(self) -> list[p.QueueInfo]:
        return p.decode(p.QueueList, await self._request(subjects.QUEUES, b"")).queues

    async def update_queue(self, name: str, **changes: Any) -> p.QueueInfo:
        """Change a queue's ``priority``, ``concurrency_limit`` (0: none) or ``paused``."""
        update = p.QueueUpdate(name=name, **changes)
        return p.decode(p.QueueUpdated, await self._request(subjects.QUEUE_UPDATE, update.dump()))

    async def deployments(self) -> list[dict[str, Any]]:
        """Every deployment, with its parameters' JSON schema."""
        data = await self._request(subjects.DEPLOYMENTS, b"")
        return p.decode(p.DeploymentList, data).deployments

    async def agents(self) -> list[p.AgentInfo]:
        return p.decode(p.AgentList, await self._request(subjects.AGENTS, b"")).agents

    async def resume(self, run_id: str, input: dict[str, Any] | None = None) -> str:
        """Resume a Paused run with the input its pause waits for (validated: a ``ClientError``
        with code ``invalid_input`` says what is wrong). Returns its state: Scheduled."""
        request = p.ResumeRequest(run_id=run_id, input=input)
        return p.decode(p.ResumeReply, await self._request(subjects.RESUME, request.dump())).state

    async def retry(self, run_id: str) -> str:
        """Queue a Failed, Crashed, Cancelled or TimedOut run of a deployment again, as a new
        attempt of the same run (a ``ClientError`` with code ``not_retryable`` otherwise).
        Returns its state: AwaitingRetry."""
        request = p.RetryRequest(run_id=run_id)
        return p.decode(p.ResumeReply, await self._request(subjects.RETRY, request.dump())).state

    async def emit(
        self,
        event_type: str,
        resource: str | None = None,
        labels: dict[str, str] | None = None,
        payload: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> p.CustomEvent:
        """Publish an event of your own (``file.uploaded``) for automations to react to; it is
        stored by JetStream before this returns. The same ``event_id`` twice is one event."""
        event = p.CustomEvent(
            id=event_id or str(uuid.uuid4()),
            type=event_type,
            occurred=datetime.now(UTC),
            resource=resource,
            labels=labels or {},
            payload=payload or {},
        )
        return await self._publish_custom(event)

    async def _publish_custom(self, event: p.CustomEvent) -> p.CustomEvent:
        await self.nats.jetstream().publish(
            subjects.custom_subject(event.type), event.dump(), headers={"Nats-Msg-Id": event.id}
        )
        return event

    async def automations_changed(self) -> bool:
        """Tell the automation engine to read the automations again; True once it has (False
        when no engine runs: it reads them when it starts)."""
        try:
            await self.nats.request(subjects.AUTOMATIONS_CHANGED, b"", timeout=5)
        except (NoRespondersError, NatsTimeoutError):
            return False
        return True

    async def limits(self) -> list[p.LimitInfo]:
        """Tag concurrency limits with the slots held and waited for right now."""
        return p.decode(p.LimitList, await self._request(subjects.LIMITS, b"")).limits


__all__ = [
    "Client",
    "ClientError",
    "FinalState",
    "FlowRunCreated",
    "FlowRunStateChanged",
    "NoOrchestrator",
    "SubmittedRun",
]
