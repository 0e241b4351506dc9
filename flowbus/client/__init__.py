"""The Python client for services: submit runs, wait for them, cancel them, follow their events.

    async with flowbus.Client() as client:
        run = await client.submit("etl-flow/daily", parameters={"url": url}, idempotency_key=key)
        final = await client.wait(run.run_id)
        async for event in client.events(run_id=run.run_id, types=["flow_run.state"]):
            ...

One front over two ways to reach flowbus: NATS (the default: ``$FLOWBUS_NATS_URL``, or a
running ``flowbus up``; the wire protocol of docs/protocol.md, which any language can speak)
or, given ``api_url``, a server's HTTP API (for machines that reach the team's server but not
its NATS).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime
from typing import Any

from flowbus.broker import protocol as p
from flowbus.client.model import ClientError, FinalState, NoOrchestrator, SubmittedRun
from flowbus.client.nats_transport import NatsTransport
from flowbus.client.transport import Transport
from flowbus.engine.event_types import EventType
from flowbus.engine.events import Event, FlowRunCreated, FlowRunStateChanged
from flowbus.engine.states import TERMINAL_TYPES, StateType


class Client:
    """A connection to flowbus: over NATS, or over a server's HTTP API given ``api_url`` (and
    ``api_token``). The methods are the same either way."""

    def __init__(
        self,
        nats_url: str | None = None,
        timeout: float = 10.0,
        api_url: str | None = None,
        api_token: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.transport: Transport
        if api_url is not None:
            from flowbus.client.http_transport import HttpTransport
            from flowbus.remote.profiles import Api

            self.transport = HttpTransport(Api(api_url.rstrip("/"), api_token), timeout)
        else:
            self.transport = NatsTransport(nats_url, timeout)

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect, or fail at once with a clear error when flowbus cannot be reached."""
        await self.transport.connect()

    async def close(self) -> None:
        await self.transport.close()

    @property
    def nats(self) -> Any:
        """The NATS connection of a client over NATS (``ClientError`` "not_over_http" else)."""
        return self.transport.nats

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
        ``scheduled_time`` (timezone-aware) the run waits, Scheduled, until that time. No
        answer in time is ``ClientError`` code ``timeout``: the run may still be made (an
        ``idempotency_key`` makes trying again safe)."""
        request = p.SubmitRequest(
            deployment=deployment,
            parameters=parameters or {},
            idempotency_key=idempotency_key,
            tags=list(tags),
            scheduled_time=scheduled_time,
            schedule_id=schedule_id,
        )
        try:
            return await self.transport.submit(request)
        except ClientError as exc:
            if exc.code != "timeout":
                raise
            # A busy orchestrator may still make the run after this client gave up waiting.
            again = (
                "submitting again with the same idempotency_key returns that run"
                if idempotency_key is not None
                else "submit with an idempotency_key to try again without making it twice"
            )
            raise ClientError("timeout", f"{exc}: the run may still be made; {again}") from exc

    async def cancel(self, run_id: str) -> str:
        """Cancel a run; returns its state after the request (Cancelled, or Cancelling while
        its agent stops it, or the final state it already had)."""
        return await self.transport.cancel(run_id)

    async def wait(self, run_id: str, timeout: float | None = None) -> FinalState:  # noqa: ASYNC109
        """Wait until the run reaches a final state (one it is not queued again from) and the
        store holds it, so a read of the run right after (``runs show``, the API) agrees."""
        return await asyncio.wait_for(self.transport.wait(run_id), timeout)

    async def result(self, run_id: str) -> Any:
        """The value a Completed run's flow returned: the JSON its Completed event carries, or,
        for a result that is not JSON, the exact value read from result storage (which must be
        reachable from here: ``FLOWBUS_RESULT_STORAGE`` shared between hosts).

        ``ClientError`` "not_found" (no such run on the events stream), "not_completed", or
        "result_unavailable" (stored, and not readable from here)."""
        return await self.transport.result(run_id)

    async def resume(self, run_id: str, input: dict[str, Any] | None = None) -> str:
        """Resume a Paused run with the input its pause waits for (validated: a ``ClientError``
        with code ``invalid_input`` says what is wrong). Returns its state: Scheduled."""
        return await self.transport.resume(run_id, input)

    async def retry(self, run_id: str) -> str:
        """Queue a Failed, Crashed, Cancelled or TimedOut run of a deployment again, as a new
        attempt of the same run (a ``ClientError`` with code ``not_retryable`` otherwise).
        Returns its state: AwaitingRetry."""
        return await self.transport.retry(run_id)

    async def events(
        self,
        run_id: str | None = None,
        types: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Events as they happen (from the start of a run's stream when ``run_id`` is given,
        else from ``since``, else from now), in order, as the typed models of
        ``flowbus.engine.events``. The iteration does not end by itself."""
        stream = self.transport.events(run_id, list(types) if types else None, since)
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                yield event

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

    # --- queues, agents, deployments, limits, custom events ----------------------------------

    async def queues(self) -> list[p.QueueInfo]:
        return await self.transport.queues()

    async def update_queue(self, name: str, **changes: Any) -> p.QueueInfo:
        """Change a queue's ``priority``, ``concurrency_limit`` (0: none) or ``paused``."""
        return await self.transport.update_queue(p.QueueUpdate(name=name, **changes))

    async def deployments(self) -> list[dict[str, Any]]:
        """Every deployment, with its parameters' JSON schema."""
        return await self.transport.deployments()

    async def agents(self) -> list[p.AgentInfo]:
        return await self.transport.agents()

    async def limits(self) -> list[p.LimitInfo]:
        """Tag concurrency limits with the slots held and waited for right now."""
        return await self.transport.limits()

    async def emit(
        self,
        event_type: str,
        resource: str | None = None,
        labels: dict[str, str] | None = None,
        payload: dict[str, Any] | None = None,
        event_id: str | None = None,
        related: list[dict[str, str]] | None = None,
    ) -> p.CustomEvent:
        """Publish an event of your own (``file.uploaded``) for automations to react to; it is
        stored by JetStream before this returns. The same ``event_id`` twice is one event.
        ``related``: other resources it concerns (``{"prefect.resource.id": ..., "prefect.
        resource.role": ...}``), which triggers' ``match_related`` look at."""
        event = p.CustomEvent(
            id=event_id or str(uuid.uuid4()),
            type=event_type,
            occurred=datetime.now(UTC),
            resource=resource,
            labels=labels or {},
            payload=payload or {},
            related=related or [],
        )
        return await self.transport.emit(event)

    async def automations_changed(self) -> bool:
        """Tell the automation engine to read the automations again; True once it has (False
        when no engine runs: it reads them when it starts)."""
        return await self.transport.automations_changed()


__all__ = [
    "Client",
    "ClientError",
    "FinalState",
    "FlowRunCreated",
    "FlowRunStateChanged",
    "NoOrchestrator",
    "SubmittedRun",
]
