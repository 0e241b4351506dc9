"""Moving a run's events from the threads that emit them to wherever they go, in batches.

Producers only append to a deque (no lock to contend for); a flush is a marker in the same queue,
so "everything emitted before me" is decided by queue order. One task on a dedicated loop takes
whatever has accumulated and delivers it as one batch: while a batch is delivered (a commit, a
round of JetStream acks) the next one accumulates. The store's group-commit writer and the NATS
event sink are both pumps; they differ only in how a batch is delivered.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from flowbus.engine.errors import StoreError

log = logging.getLogger("flowbus.engine")

#: Delivers a batch of items (event records, or whatever a pump's owner submits for one).
Deliver = Callable[[list[Any]], Awaitable[None]]


class _FlushMarker:
    """Put in the queue by ``flush``; finished once everything queued before it is delivered:
    a thread's flush waits on ``done``, a coroutine's is called back."""

    __slots__ = ("callback", "done", "error")

    def __init__(self, callback: Callable[[], None] | None = None) -> None:
        # Only a blocking flush needs an event to wait on: one costs a lock and a condition,
        # and every run's last flush (from its coroutine) made one for nothing.
        self.done = threading.Event() if callback is None else None
        self.error: BaseException | None = None
        self.callback = callback

    def finish(self, error: BaseException | None = None) -> None:
        self.error = error
        if self.done is not None:
            self.done.set()
        if self.callback is not None:
            self.callback()


class Pump:
    """Deliver events from any thread in batches; ``flush`` waits until they are delivered.

    A failed delivery keeps its events, in order, for the next attempt (made by the next emit or
    flush), so nothing is lost in the process; ``flush`` raises the error meanwhile.
    """

    #: What a failed flush raises (with the delivery error as its cause).
    error_type: type[Exception] = StoreError
    #: How the messages say what delivery means ("recorded", "published").
    done_as = "delivered"
    #: After a failed delivery, seconds until it is tried again by itself (None: only at the
    #: next submit or flush).
    retry_after: float | None = None

    def __init__(self, deliver: Deliver, loop: asyncio.AbstractEventLoop) -> None:
        self._deliver = deliver
        self._loop = loop
        self._queue: collections.deque[Any] = collections.deque()
        self._draining = False

    def submit(self, record: Any) -> None:
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
            items: list[Any] = []
            while queue:
                items.append(queue.popleft())
            if not items:
                self._draining = False
                if not queue:  # an item added after the check above wakes a new drain
                    return
                self._draining = True
                continue
            records = [i for i in items if not isinstance(i, _FlushMarker)]
            markers = [i for i in items if isinstance(i, _FlushMarker)]
            try:
                if records:
                    await self._deliver(records)
            except BaseException as exc:
                self._fail(records, markers, exc)
                return
            for marker in markers:
                marker.finish()

    def _fail(self, records: list[Any], markers: list[_FlushMarker], exc: BaseException) -> None:
        """Keep the events for the next attempt; answer every waiting flush with the error."""
        # Stop draining first: a flush queued after the sweep below sees it and wakes a retry.
        self._draining = False
        swept: list[Any] = []
        while self._queue:
            swept.append(self._queue.popleft())
        held = records + [item for item in swept if not isinstance(item, _FlushMarker)]
        self._queue.extendleft(reversed(held))  # in order, ahead of anything appended since
        log.error("%d events not %s yet: %s", len(held), self.done_as, str(exc) or repr(exc))
        if self.retry_after is not None:
            self._loop.call_later(self.retry_after, self._retry)
        for marker in markers + [item for item in swept if isinstance(item, _FlushMarker)]:
            marker.finish(exc)

    def _retry(self) -> None:
        if self.retry_after is not None and self._queue and not self._draining:
            self._draining = True
            self._start_drain()

    def flush(self, timeout: float | None = None) -> None:
        """Block until every event submitted before the call is delivered."""
        marker = _FlushMarker()
        done = marker.done
        assert done is not None
        self._queue.append(marker)
        if not self._draining:
            self._wake()
        if not done.wait(timeout):
            raise self.error_type(f"events not {self.done_as} within {timeout} s")
        if marker.error is not None:
            message = f"events could not be {self.done_as}: {marker.error}"
            raise self.error_type(message) from marker.error

    async def flush_async(self) -> None:
        """``flush`` for a coroutine on any loop: waits without holding a thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not future.done():
                future.set_result(None)

        def wake_waiter() -> None:  # called on the pump's loop; the waiter may be elsewhere
            loop.call_soon_threadsafe(resolve)

        marker = _FlushMarker(wake_waiter)
        self._queue.append(marker)
        if not self._draining:
            self._wake()
        await future
        if marker.error is not None:
            message = f"events could not be {self.done_as}: {marker.error}"
            raise self.error_type(message) from marker.error

    @property
    def draining(self) -> bool:
        """Whether a delivery is under way (its items are out of the queue meanwhile)."""
        return self._draining

    def take_backlog(self) -> list[Any]:
        """Take the items not delivered yet away from the pump (on its loop, between
        deliveries: ``draining`` false, ``retry_after`` None); flushes waiting are answered."""
        items: list[Any] = []
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, _FlushMarker):
                item.finish()
            else:
                items.append(item)
        return items

    @property
    def backlog(self) -> int:
        """Events waiting to be delivered."""
        return sum(1 for item in list(self._queue) if not isinstance(item, _FlushMarker))
