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

from nats.aio.client import Client

from flowbus.broker import subjects
from flowbus.broker.connection import connect
from flowbus.broker.errors import BrokerError
from flowbus.engine.loops import BackgroundLoop
from flowbus.engine.pump import Pump
from flowbus.engine.records import EventRecord

ACK_TIMEOUT = 10.0

_Item = tuple[EventRecord, dict[str, str] | None]


class NatsEventSink:
    """Publishes run events to JetStream from any thread, in batches, on its own loop."""

    def __init__(self, url: str | None = None, name: str = "flowbus-events") -> None:
        self._loop = BackgroundLoop(f"{name}-loop")
        self.client: Client = self._loop.call(connect(url, name=name))
        self._js = self.client.jetstream()
        self._pump = Pump(self._publish, self._loop.loop)
        self._pump.error_type = BrokerError
        self._pump.done_as = "published"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop ``client`` lives on."""
        return self._loop.loop

    async def _publish(self, batch: list[_Item]) -> None:
        # publish_async pipelines the batch (it waits itself once too many are in flight);
        # its futures have no timeout of their own, hence the wait_for.
        futures = []
        for record, fence in batch:
            headers = {"Nats-Msg-Id": record.id}
            if fence:
                headers.update(fence)
            subject = subjects.event_subject(record.stream_id, record.type)
            futures.append(await self._js.publish_async(subject, record.body(), headers=headers))
        await asyncio.wait_for(asyncio.gather(*futures), ACK_TIMEOUT)

    def emit(self, record: EventRecord) -> None:
        self._pump.submit((record, None))

    def emit_fenced(self, record: EventRecord, fence: dict[str, str]) -> None:
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


class FencedSink:
    """The sink of one claimed run: its events carry the run and the claim's attempt."""

    def __init__(self, base: NatsEventSink, run_id: str, attempt: int) -> None:
        self.base = base
        self.fence = {subjects.RUN_HEADER: run_id, subjects.ATTEMPT_HEADER: str(attempt)}

    def emit(self, record: EventRecord) -> None:
        self.base.emit_fenced(record, self.fence)

    def flush(self, timeout: float | None = None) -> None:
        self.base.flush(timeout)

    async def flush_async(self) -> None:
        await self.base.flush_async()
