"""Group commit: events from any thread are appended in batches, one transaction per batch.

While one batch is being committed, the next one accumulates; under load a batch holds every event
emitted during the previous commit, so the cost of a commit (and of its fsync) is shared.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict

from flowbus.engine.errors import SequenceError, StoreError
from flowbus.engine.records import EventRecord
from flowbus.engine.store.base import EventStore

log = logging.getLogger("flowbus.store")


class GroupCommitWriter:
    """Append events to ``store`` from any thread; ``flush`` waits until they are durable.

    A failed commit keeps its events and is retried by the next flush or emit, so a full disk or a
    locked database loses nothing in this process; ``flush`` raises the error meanwhile.
    """

    def __init__(self, store: EventStore, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop
        self._cond = threading.Condition()
        self._pending: list[EventRecord] = []
        self._draining = False
        self._submitted = 0
        self._committed = 0
        self._error: BaseException | None = None

    def submit(self, record: EventRecord) -> None:
        with self._cond:
            self._pending.append(record)
            self._submitted += 1
            if self._draining:
                return
            self._draining = True
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            with self._cond:
                batch, self._pending = self._pending, []
                if not batch:
                    self._draining = False
                    self._cond.notify_all()
                    return
            try:
                await self._append(batch)
            except BaseException as exc:
                with self._cond:
                    self._pending[:0] = batch  # keep them, in order, for the next attempt
                    self._error = exc
                    self._draining = False
                    self._cond.notify_all()
                log.error("%d events not recorded yet: %s", len(batch), exc)
                return
            with self._cond:
                self._committed += len(batch)
                self._cond.notify_all()

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
        with self._cond:
            target = self._submitted
            if self._error is not None and self._pending and not self._draining:
                self._error = None  # retry what failed last time
                self._draining = True
                self._loop.call_soon_threadsafe(self._start_drain)
            done = self._cond.wait_for(
                lambda: self._committed >= target or self._error is not None, timeout
            )
            if self._committed >= target:
                return
            if self._error is not None:
                raise StoreError(f"events could not be recorded: {self._error}") from self._error
            if not done:
                raise StoreError(f"events not recorded within {timeout} s")

    @property
    def backlog(self) -> int:
        with self._cond:
            return self._submitted - self._committed
