"""Group commit for async callers in one process (the orchestrator): ``append`` returns once the
caller's events are committed, and every caller waiting meanwhile shares one transaction."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from flowbus.engine.errors import StoreError
from flowbus.engine.records import EventRecord
from flowbus.engine.store.base import EventStore

_Group = tuple[list[EventRecord], "asyncio.Future[None]"]


class BatchWriter:
    """Appends groups of events in shared transactions; each group succeeds or fails alone.

    A batch the store refuses (a sequence conflict in one group, say) is retried group by group,
    so one caller's conflict is that caller's error only.
    """

    def __init__(self, store: EventStore, max_batch: int = 5000) -> None:
        self.store = store
        self.max_batch = max_batch
        self._waiting: list[_Group] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Called with the records of each commit, before their callers resume.
        self.on_commit: Callable[[list[EventRecord]], None] = lambda records: None
        #: How many records of each stream wait for their commit or are being committed.
        self._in_flight: dict[str, int] = {}

    def committing(self, stream_id: str) -> bool:
        """Whether events of ``stream_id`` are waiting for a commit or in one: what reads the
        store meanwhile queues behind that commit and finds what it had before."""
        return stream_id in self._in_flight

    async def append(self, records: Sequence[EventRecord]) -> None:
        """Commit ``records`` (in order, atomically); raises what the store raised for them."""
        if not records:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="flowbus-batch-writer")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((list(records), future))
        in_flight = self._in_flight
        for record in records:
            in_flight[record.stream_id] = in_flight.get(record.stream_id, 0) + 1
        self._wake.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                batch, size = [], 0
                while self._waiting and size < self.max_batch:
                    group = self._waiting.pop(0)
                    batch.append(group)
                    size += len(group[0])
                await self._commit(batch)

    async def _commit(self, batch: list[_Group]) -> None:
        try:
            await self.store.append([record for group, _ in batch for record in group])
        except StoreError as exc:
            if len(batch) == 1:
                self._done(batch, exc)
                return
            for group in batch:  # one group's conflict is that group's error only
                try:
                    await self.store.append(group[0])
                except BaseException as alone:
                    self._done([group], alone)
                else:
                    self._done([group], None)
            return
        except BaseException as exc:  # every waiter must hear of it
            self._done(batch, exc)
            return
        self._done(batch, None)

    def _done(self, groups: list[_Group], error: BaseException | None) -> None:
        """``groups`` are committed (``error`` None) or refused: they no longer count as being
        committed (before ``on_commit``, so what it answers does not wait for them), and their
        callers hear of it."""
        records = [record for group, _ in groups for record in group]
        in_flight = self._in_flight
        for record in records:
            left = in_flight.get(record.stream_id, 0) - 1
            if left > 0:
                in_flight[record.stream_id] = left
            else:
                in_flight.pop(record.stream_id, None)
        if error is None:
            self.on_commit(records)
        for _, future in groups:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
