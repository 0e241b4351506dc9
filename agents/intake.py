"""How an agent takes work from its queues: only when it has room, in priority order, woken by
a doorbell on each publication (no polling on the dispatch path), with a one-second tick for
redeliveries, which ring no bell; the queues' settings (pause, priority, limit) followed as
they change. It also knows when the agent is idle: its queues found drained on the last look
and no bell rung since, so a run handed to it directly overtakes no request waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, NotFoundError

from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.broker.streams import ensure_queue_consumer
from flowbus.broker.work_queue import QueueTaker

log = structlog.get_logger("flowbus.agent")

#: How much more an agent asks a queue for after a take that was filled.
PROBE_GROWTH = 4
#: After a doorbell that found no request: when to look again (seconds, one after another).
RING_RETRY_SECONDS = (0.002, 0.004, 0.008, 0.016, 0.032)


class Intake:
    """The agent's side of its work queues. ``free()`` is its room, ``stopping()`` whether it
    stops, and ``take(message, queue)`` is handed each request taken (a slot for it counted
    in ``free()`` before the call returns)."""

    def __init__(
        self,
        client: Client,
        queues: tuple[str, ...],
        tick_seconds: float,
        free: Callable[[], int],
        stopping: Callable[[], bool],
        take: Callable[[Msg, str], None],
    ) -> None:
        self.client = client
        self.js = client.jetstream()
        self.queues = queues
        self.tick_seconds = tick_seconds
        self.free = free
        self.stopping = stopping
        self.take = take
        self.doorbell = asyncio.Event()
        #: Whether the last look found every queue drained, with no bell rung since.
        self.idle = False
        self._takers: dict[str, QueueTaker] = {}
        self._settings: dict[str, p.QueueSettings] = {}
        self._watcher: Any = None

    async def open(self, manages: bool, ack_wait: float) -> float:
        """Bind to each queue (making its consumer when this process ``manages`` streams);
        the shortest ack wait of their consumers, at most ``ack_wait``."""
        self._kv = await self.js.key_value(subjects.QUEUES_BUCKET)
        for queue in self.queues:
            settings = await self._read(queue)
            try:
                info = await self.js.consumer_info(
                    subjects.RUNS_STREAM, subjects.queue_consumer(queue)
                )
                ack_wait = min(ack_wait, info.config.ack_wait or 30.0)
            except NotFoundError:  # made here, or (an agent's own credential) by the
                if manages:  # orchestrator with the queue's first run
                    limit = settings.concurrency_limit or 10_000
                    await ensure_queue_consumer(self.js, queue, limit, ack_wait)
            taker = self._takers[queue] = QueueTaker(self.client, queue)
            await taker.start(self.doorbell)
        return ack_wait

    async def stop_taking(self) -> None:
        for taker in self._takers.values():
            await taker.stop()

    async def close(self) -> None:
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()

    def ring(self) -> None:
        """Look at the queues now (a slot came free, the agent stops)."""
        self.doorbell.set()

    def slot_freed(self) -> None:
        """A run ended: look for requests that may wait for its slot (none can if the agent
        was idle: a request published since would have rung)."""
        if not self.idle:
            self.doorbell.set()

    def may_hand_over(self, queue: str) -> bool:
        """Whether a run of ``queue`` may be handed to the agent directly (given room): it is
        idle, serves ``queue``, and the queue is not paused and has no limit of its own (which
        only the queue's requests count)."""
        settings = self._settings.get(queue)
        return (
            self.idle
            and not self.doorbell.is_set()
            and queue in self._takers
            and not (settings is not None and (settings.paused or settings.concurrency_limit))
        )

    # --- the loops ----------------------------------------------------------------------------

    async def dispatch(self) -> None:
        while not self.stopping():
            rang = False
            with contextlib.suppress(TimeoutError):
                rang = await asyncio.wait_for(self.doorbell.wait(), self.tick_seconds)
            self.idle = False
            self.doorbell.clear()
            if self.stopping():
                return
            try:
                taken = await self._take_work()
                if rang and not taken:
                    self.idle = False  # a request may be on its way: see _take_after_ring
                    await self._take_after_ring()
            except Exception as exc:  # a reconnect, a leader election: the next round retries
                log.warning("taking work failed", error=repr(exc))
                await asyncio.sleep(0.5)

    async def watch_settings(self) -> None:
        """Pause, resume and priority changes reach the agent as they are made (a KV watch)."""
        watcher = self._watcher = await self._kv.watchall(include_history=False)
        async for entry in watcher:
            if entry is None or entry.key not in self._takers:
                continue
            try:
                self._settings[entry.key] = p.QueueSettings.model_validate_json(entry.value or b"")
            except ValueError:
                continue
            self.doorbell.set()

    # --- taking -------------------------------------------------------------------------------

    async def _take_after_ring(self) -> None:
        """The doorbell rang but nothing was there: a request's core delivery (the doorbell)
        can reach the agent before its stream hands it to a pull. Look again a few times over
        some tens of milliseconds rather than at the next tick, a second later (another
        agent may simply have taken it)."""
        for delay in RING_RETRY_SECONDS:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.doorbell.wait(), delay)
            self.doorbell.clear()
            if self.stopping() or self.free() <= 0 or await self._take_work():
                return
            self.idle = False
        self.idle = not self.doorbell.is_set()

    async def _take_work(self) -> int:
        """Take what the queues hold, in priority order, up to the free room; how many.

        One probe first, then four times as many as long as each take is filled: a ring is
        mostly one request, and a probe per free slot on every ring cost the server and this
        agent a round of empty answers (an agent of concurrency 50 ran one-at-a-time calls
        30 % slower than one of 10)."""
        taken = 0
        drained = True
        for queue in self._by_priority():
            want = 1
            while True:
                if self.free() <= 0 or self.stopping():
                    drained = False  # what else the queue holds is not known
                    break
                ask = min(self.free(), want)
                messages = await self._takers[queue].take(ask)
                taken += len(messages)
                for message in messages:
                    self.take(message, queue)
                if len(messages) < ask:
                    break  # the queue holds no more (or is at its limit)
                want = ask * PROBE_GROWTH
            if self.free() <= 0:
                drained = False
                break
        self.idle = drained and not self.doorbell.is_set()
        return taken

    def _by_priority(self) -> list[str]:
        """The queues not paused, highest priority first (ties in the order given)."""
        order = {q: i for i, q in enumerate(self.queues)}

        def settings(queue: str) -> p.QueueSettings:
            return self._settings.get(queue, p.QueueSettings(name=queue))

        queues = [q for q in self.queues if not settings(q).paused]
        return sorted(queues, key=lambda q: (-settings(q).priority, order[q]))

    async def _read(self, queue: str) -> p.QueueSettings:
        try:
            entry = await self._kv.get(queue)
            settings = p.QueueSettings.model_validate_json(entry.value or b"")
        except (KeyNotFoundError, ValueError):
            settings = p.QueueSettings(name=queue)
        self._settings[queue] = settings
        return settings


__all__ = ["PROBE_GROWTH", "RING_RETRY_SECONDS", "Intake"]
