"""Group commit: events from any thread are appended in batches, one transaction per batch.

While one batch is being committed, the next one accumulates; under load a batch holds every event
emitted during the previous commit, so the cost of a commit (and of its fsync) is shared.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from flowbus.engine.errors import SequenceError
from flowbus.engine.pump import Pump
from flowbus.engine.records import EventRecord
from flowbus.engine.store.base import EventStore

log = logging.getLogger("flowbus.store")


class GroupCommitWriter(Pump):
    """Append events to ``store`` from any thread; ``flush`` waits until they are committed.

    A failed commit (a locked database, a full disk) keeps its events for the next attempt, so
    nothing is lost in this process; ``flush`` raises ``StoreError`` meanwhile.
    """

    done_as = "recorded"

    def __init__(self, store: EventStore, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(self._append, loop)
        self._store = store

    async def _append(self, batch: list[EventRecord]) -> None:
        try:
            await self._store.append(batch)
        except SequenceError:
            # One stream's broken sequence must not hold back the other streams of the batch.
            by_stream: dict[str, list[EventRecord]] = defaultdict(list)
            for record in batch:
                by_stream[record.stream_id].append(record)
            for stream_id, records in by_stream.items():
                try:
                    await self._store.append(records)
                except SequenceError as exc:
                    log.error("events of stream %s refused by the store: %s", stream_id, exc)
