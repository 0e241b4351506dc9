"""The engine's event sink for runs that agents execute: events go to JetStream, not to a file.

Each event is published to ``flowbus.event.<stream_id>.<type>`` with ``Nats-Msg-Id`` set to the
event id, so a retried publish is deduplicated by the stream (within its duplicate window) and by
the store's per-run sequence (for ever). ``flush`` returns once JetStream has acknowledged every
event emitted before it.

An agent publishes the events of a run it holds through ``FencedSink``, which adds the run and
the claim's attempt as headers: the orchestrator records them only while that attempt still
holds the run, so a zombie agent's late events are refused.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from nats.aio.client import Client

from flowbus.broker import subjects, versions
from flowbus.broker.acked_publish import AckedPublisher
from flowbus.broker.connection import connect, connection_log
from flowbus.broker.errors import BrokerError
from flowbus.broker.fencing import fence_headers
from flowbus.engine.loops import BackgroundLoop
from flowbus.engine.pump import Pump
from flowbus.engine.records import EventRecord

ACK_TIMEOUT = 10.0

_Item = tuple[EventRecord, "Fence | None"]


class EventPublisher:
    """Publishes events to JetStream in batches on ``client``'s loop, retrying until they are
    acknowledged: a batch whose publish fails (the server restarting, say) is published again
    shortly, and at once when the connection comes back, rather than after the ack timeout."""

    def __init__(
        self,
        client: Client,
        loop: asyncio.AbstractEventLoop,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._acked = AckedPublisher(client)
        #: Headers every event carries (besides its message id and any fence of its own).
        self._headers = versions.with_version(headers)  # the wire's version on every event
        self.pump = Pump(self._publish, loop)
        self.pump.error_type = BrokerError
        self.pump.done_as = "published"
        # Events whose publish failed are published again soon, not only at the next emit:
        # a run's final events must reach JetStream even when the run emits nothing after.
        self.pump.retry_after = 0.2
        #: Set on the loop when the connection comes back: a batch waiting for its acks then
        #: will not get them (they were due on the old connection).
        self._reconnected = asyncio.Event()
        events = connection_log(client)
        if events is not None:
            events.on_reconnect.append(self._reconnected.set)

    async def _publish(self, batch: list[_Item]) -> None:
        # The batch is pipelined, its acks counted (``acked_publish.py``). A reconnect while
        # they are awaited ends the wait at once: the batch is published again (its message
        # ids dedupe).
        self._reconnected.clear()
        messages = []
        for record, fence in batch:
            headers = {"Nats-Msg-Id": record.id, **self._headers}
            body = record.body()
            if fence is not None:
                headers.update(fence.headers(body))
            messages.append((subjects.event_subject(record.stream_id, record.type), body, headers))
        acks = await self._acked.publish(messages)
        reconnect: asyncio.Future[Any] = asyncio.ensure_future(self._reconnected.wait())
        try:
            done, _ = await asyncio.wait(
                {acks, reconnect}, timeout=ACK_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            reconnect.cancel()
        if acks in done:
            acks.result()
            return
        self._acked.forget(acks)
        acks.cancel()
        if reconnect in done:
            raise BrokerError(f"reconnected while {len(batch)} events awaited their acks")
        raise BrokerError(f"no JetStream ack within {ACK_TIMEOUT:g} s for {len(batch)} events")

    def submit(self, record: EventRecord, fence: Fence | None = None) -> None:
        self.pump.submit((record, fence))


class NatsEventSink:
    """Publishes run events to JetStream from any thread, in batches, on its own loop."""

    def __init__(self, url: str | None = None, name: str = "flowbus-events") -> None:
        self._loop = BackgroundLoop(f"{name}-loop")
        self.client: Client = self._loop.call(connect(url, name=name))
        self._publisher = EventPublisher(self.client, self._loop.loop)
        self._pump = self._publisher.pump

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop ``client`` lives on."""
        return self._loop.loop

    def emit(self, record: EventRecord) -> None:
        self._pump.submit((record, None))

    def emit_fenced(self, record: EventRecord, fence: Fence) -> None:
        self._pump.submit((record, fence))

    def flush(self, timeout: float | None = None) -> None:
        self._pump.flush(timeout)

    async def flush_async(self) -> None:
        """Wait, from any event loop, until every event emitted before is published."""
        await self._pump.flush_async()

    def close(self) -> None:
        """Publish what is left, then drain and close the connection."""
        try:
            self.flush(ACK_TIMEOUT)
        finally:
            self._loop.call(self.client.drain())
            self._loop.stop()


@dataclass(frozen=True)
class Fence:
    """A claimed run's attempt, as its events carry it (``broker/fencing.py``)."""

    run_id: str
    attempt: int
    #: The attempt key's bytes (decoded once per run, not per event).
    key: bytes | None = field(default=None, repr=False)

    def headers(self, body: bytes) -> dict[str, str]:
        return fence_headers(self.run_id, self.attempt, self.key, body)


class FencedBase(Protocol):
    """Where a claimed run's events go (``NatsEventSink``, or the agent's local lane)."""

    def emit_fenced(self, record: EventRecord, fence: Fence) -> None: ...
    def flush(self, timeout: float | None = None) -> None: ...
    async def flush_async(self) -> None: ...


class FencedSink:
    """The sink of one claimed run: its events carry the run, the claim's attempt and a MAC
    under the attempt's key."""

    def __init__(self, base: FencedBase, run_id: str, attempt: int, key: str | None = None) -> None:
        self.base = base
        self.fence = Fence(run_id, attempt, bytes.fromhex(key) if key else None)

    def emit(self, record: EventRecord) -> None:
        self.base.emit_fenced(record, self.fence)

    def flush(self, timeout: float | None = None) -> None:
        self.base.flush(timeout)

    async def flush_async(self) -> None:
        await self.base.flush_async()
