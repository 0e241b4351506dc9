"""The local lane: the events of an agent that lives in the leading orchestrator's process
(``flowbus up``) are recorded there directly, not through JetStream and back.

Through the stream, a run's event is published by the agent, stored by JetStream, delivered
to the leader's recorder, parsed and checked, and only then committed: two trips through the
nats-server and a JSON round trip for an event that never left the process. Here the agent's
sink hands each event to the orchestrator's recorder in memory: admitted by the same ledger
(the attempt must hold the run), committed by the same group commit, and then published on
the events stream by the announcer, like the orchestrator's own decisions, so subscribers see
every event of a run in its order. A wait on the run is answered by the commit itself.

What does not change: the store is the judge (a sequence conflict, a fenced attempt), and an
event the lane cannot record goes the ordinary way. Whenever the orchestrator is not leading
(an election elsewhere), or the store refuses a batch (locked, full, a gap), the events are
published to JetStream with the run's fence, in order, and the leader's recorder records them
from there when it can: nothing emitted is lost in the process, and an event recorded twice is
a no-op.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog
from nats.aio.client import Client

from flowbus.broker.event_sink import Fence, NatsEventSink
from flowbus.engine.pump import Pump
from flowbus.engine.records import EventRecord

log = structlog.get_logger("flowbus.agent")


class LocalRecorder(Protocol):
    """The orchestrator's side of the lane (``Orchestrator``)."""

    def records_here(self) -> bool:
        """Whether this process records the events stream now (it leads)."""
        ...

    async def record_here(self, items: list[tuple[EventRecord, tuple[str, int]]]) -> list[int]:
        """Admit and commit ``(event, (run, attempt))`` items, then announce them; returns the
        indexes of those to publish instead (the recorder refuses them with its reasons).
        Raises if the store did not commit them (nothing of them is then written)."""
        ...


class LocalLaneSink:
    """An agent's sink for the runs it holds, when the leader's recorder is in its process:
    ``emit_fenced`` from any thread; ``flush`` returns once every event emitted before it is
    committed here or acknowledged by JetStream."""

    def __init__(
        self, nats: NatsEventSink, recorder: LocalRecorder, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.nats = nats
        self.recorder = recorder
        self.pump = Pump(self._deliver, loop)
        self.pump.done_as = "recorded"
        self.pump.retry_after = 0.2
        #: Batches that went the ordinary way (the lane could not record them).
        self.fell_back = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop of the NATS connection (requests a run makes besides its events)."""
        return self.nats.loop

    @property
    def client(self) -> Client:
        return self.nats.client

    def emit(self, record: EventRecord) -> None:
        self.nats.emit(record)  # an event of no claimed run: the ordinary way

    def emit_fenced(self, record: EventRecord, fence: Fence) -> None:
        self.pump.submit((record, fence))

    def flush(self, timeout: float | None = None) -> None:
        self.pump.flush(timeout)

    async def flush_async(self) -> None:
        await self.pump.flush_async()

    async def _deliver(self, batch: list[tuple[EventRecord, Fence]]) -> None:
        if self.recorder.records_here():
            try:
                elsewhere = await self.recorder.record_here(
                    [(record, (fence.run_id, fence.attempt)) for record, fence in batch]
                )
            except Exception as exc:  # the store refused it, or leadership moved meanwhile
                log.warning("events not recorded here; publishing them instead",
                            error=repr(exc), count=len(batch))  # fmt: skip
            else:
                batch = [batch[index] for index in elsewhere]
        if not batch:
            return
        self.fell_back += 1
        for record, fence in batch:
            self.nats.emit_fenced(record, fence)
        await self.nats.flush_async()


__all__ = ["LocalLaneSink", "LocalRecorder"]
