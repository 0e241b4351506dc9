"""Group commit: events from any thread are appended in batches, one transaction per batch.

While one batch is being committed, the next one accumulates; under load a batch holds every event
emitted during the previous commit, so the cost of a commit (and of its fsync) is shared.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections import defaultdict

from flowbus.engine.errors import SequenceError, StoreError
from flowbus.engine.records import EventRecord
from flowbus.engine.store.base import EventStore

log = logging.getLogger("flowbus.store")


class _FlushMarker:
    """Put in the queue by ``flush``; set once everything queued before it is committed."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class GroupCommitWriter:
    """Append events to ``store`` from any thread; ``flush`` waits until they are durable.

    Producers only append to a deque (no lock to contend for); a flush is a marker in the same
    queue, so "everything before me" is decided by queue order. A failed commit keeps its events,
    in order, for the next attempt (made by the next emit or flush), so a full disk or a locked
    database loses nothing in this process; ``flush`` raises the error meanwhile.
    """

    def __init__(self, store: EventStore, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop
        self._queue: collections.deque[EventRecord | _FlushMarker] = collections.deque()
        self._draining = False

    def submit(self, record: EventRecord) -> None:
        self._queue.append(record)
        if not self._draining:
            self._wake()

    def _wake(self) -> None:
        self._draining = True
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        queue = self._queue
        while True:
            items: list[EventRecord | _FlushMarker] = []
            while queue:
                items.append(queue.popleft())
            if not items:
                self._draining = False
                if not queue:  # an item added after the check above wakes a new drain
                    return
                self._draining = True
                continue
            records = [i for i in items if isinstance(i, EventRecord)]
            markers = [i for i in items if isinstance(i, _FlushMarker)]
            try:
                if records:
                    await self._append(records)
            except BaseException as exc:
                self._fail(records, markers, exc)
                return
            for marker in markers:
                marker.done.set()

    def _fail(
        self, records: list[EventRecord], markers: list[_FlushMarker], exc: BaseException
    ) -> None:
        """Keep the events for the next attempt; answer every waiting flush with the error."""
        # Stop draining first: a flush queued after the sweep below sees it and wakes a retry.
        self._draining = False
        swept: list[EventRecord | _FlushMarker] = []
        while self._queue:
            swept.append(self._queue.popleft())
        held = records + [item for item in swept if isinstance(item, EventRecord)]
        self._queue.extendleft(reversed(held))  # in order, ahead of anything appended since
        log.error("%d events not recorded yet: %s", len(held), exc)
        for marker in markers + [item for item in swept if isinstance(item, _FlushMarker)]:
            marker.error = exc
            marker.done.set()

    async def _append(self, batch: list[EventRecord]) -> None:
        try:
            await self._store.append(batch)
        except SequenceError:
            # One run's broken sequence must not hold back the other runs of the batch.
            by_run: dict[str, list[EventRecord]] = defaultdict(list)
            for record in batch:
                by_run[record.run_id].append(record)
            for run_id, records in by_run.items():
                try:
                    await self._store.append(records)
                except SequenceError as exc:
                    log.error("events of run %s refused by the store: %s", run_id, exc)

    def flush(self, timeout: float | None = None) -> None:
        """Block until every event submitted before the call is committed."""
        marker = _FlushMarker()
        self._queue.append(marker)
        if not self._draining:
            self._wake()
        if not marker.done.wait(timeout):
            raise StoreError(f"events not recorded within {timeout} s")
        if marker.error is not None:
            raise StoreError(f"events could not be recorded: {marker.error}") from marker.error

    @property
    def backlog(self) -> int:
        """Events waiting to be committed."""
        return sum(1 for item in list(self._queue) if isinstance(item, EventRecord))
