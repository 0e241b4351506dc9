"""After ``flowbus store restore``: the events the backup missed are recorded from the events
stream (``engine/store/backup.py``).

The recorder's consumer starts again from a minute before the backup was taken. Up to the
stream's last event at that moment, each message is taken in order, alone: an event the store
holds (the same id at its place in its run) is acked and nothing is written; an orchestrator's
own decision (``Flowbus-Recorded``, which the recorder otherwise never writes: its writer did)
is written now, since the restored store lost it; an agent's event waits until the decisions
before it in its run are written again, then goes the recorder's usual way, fences and all.
Later messages go in the recorder's usual batches.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from nats.aio.msg import Msg

from flowbus.agents.ledger import RunLedger
from flowbus.broker import subjects
from flowbus.engine.errors import SequenceError
from flowbus.engine.records import EventRecord

log = structlog.get_logger("flowbus.recorder")

#: Deliveries an agent's event waits for the decisions before it (half a second apart).
PATIENCE = 60


class RestoreCatchUp:
    """Records the stream's events up to ``until`` (its last sequence when the catch-up began)."""

    def __init__(
        self, ledger: RunLedger, until: int, usual: Callable[[list[Msg]], Awaitable[None]]
    ) -> None:
        self.ledger = ledger
        self.until = until
        self.usual = usual
        self.written = 0
        self.present = 0
        self.caught_up = False

    async def handle(self, messages: list[Msg]) -> None:
        """Take ``messages`` up to ``until`` in order, alone (a redelivered one too); the later
        ones go the usual way together."""
        later = []
        for message in messages:
            if message.metadata.sequence.stream > self.until:
                later.append(message)
            else:
                await self._one(message)
        if later:
            if not self.caught_up:
                log.info("caught up after the restore", written=self.written,
                         already_held=self.present)  # fmt: skip
                self.caught_up = True
            await self.usual(later)

    async def _one(self, message: Msg) -> None:
        try:
            record = EventRecord.from_body(message.data)
        except (ValueError, KeyError):
            await self.usual([message])  # malformed: the usual way dead-letters it
            return
        head = await self.ledger.store.head(record.stream_id)
        if head >= record.seq and await self._held(record):
            self.present += 1
            await message.ack()
            return
        if not (message.headers and message.headers.get(subjects.RECORDED_HEADER)):
            # An agent's event can reach the stream before the orchestrator's decision it
            # follows (its claim is announced after its commit): until that is written again,
            # the fence would refuse the event for good. It waits for it instead (a while).
            if head < record.seq - 1 and message.metadata.num_delivered < PATIENCE:
                await message.nak(delay=0.5)
                return
            await self.usual([message])
            return
        try:  # an orchestrator's decision the restored store lost
            await self.ledger.writer.append([record])
            self.written += 1
        except SequenceError as exc:
            if exc.got > exc.expected:  # an earlier event of the run is still to come
                await message.nak(delay=1)
                return
        await self.ledger.observe([record])
        await message.ack()

    async def _held(self, record: EventRecord) -> bool:
        """Is this very event at its place in the store (the run's head is at it or past)?"""
        events = await self.ledger.store.read_stream(record.stream_id, after_seq=record.seq - 1)
        return bool(events) and events[0].id == record.id


__all__ = ["RestoreCatchUp"]
