"""Waiting for many runs on one subscription: ``Client.wait`` for each of 300 runs must not open
300 JetStream consumers (each costs a round trip to create, and a stream of its own to read).

One ordered consumer follows every run's state events from now on and hands each to the
waiters of its run. A waiter registers first, then reads its run's state events already in the
stream directly (a few direct gets: what was published before it registered), then takes what
the subscription brings; events are told apart by the run's sequence numbers, so none is missed
and none counts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any, TypeAlias

from nats.js.api import ConsumerConfig, DeliverPolicy

from flowbus.broker import subjects
from flowbus.broker.run_states import newest_state
from flowbus.engine.events import Event, FlowRunCreated, FlowRunStateChanged, decode_event
from flowbus.engine.states import TERMINAL_TYPES, StateType

RunEvent: TypeAlias = FlowRunCreated | FlowRunStateChanged
RUN_EVENTS = (FlowRunCreated, FlowRunStateChanged)
#: A run ending Crashed may be queued again at once (its flow has retries left): this long
#: without a next state means Crashed was its last.
CRASH_SETTLE_SECONDS = 1.0


class RunWaiters:
    """The shared subscription of one client, and the waiters of each run."""

    def __init__(self, js: Any) -> None:
        self.js = js
        self._queues: dict[str, list[asyncio.Queue[RunEvent]]] = defaultdict(list)
        self._subscription: Any = None
        self._started: asyncio.Lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def _ensure_started(self) -> None:
        async with self._started:
            if self._subscription is not None:
                return
            self._subscription = await self.js.subscribe(
                "flowbus.event.*.flow_run.>",
                stream=subjects.EVENTS_STREAM,
                ordered_consumer=True,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
            )
            self._task = asyncio.create_task(self._dispatch(), name="flowbus-run-waiters")

    async def _dispatch(self) -> None:
        async for message in self._subscription.messages:
            try:
                event = decode_event(message.data)
            except ValueError:
                continue  # the recorder dead-letters it; a waiter just skips it
            if isinstance(event, RUN_EVENTS):
                for queue in self._queues.get(str(event.stream_id), ()):
                    queue.put_nowait(event)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
        self._subscription = self._task = None

    async def _last_state(self, run_id: str, skip: frozenset[str] = frozenset()) -> RunEvent | None:
        return await last_state(self.js, run_id, skip)

    async def wait(self, run_id: str, skip: frozenset[str] = frozenset()) -> RunEvent:
        """The run's last state event: final, and not a Crashed it was queued again from.
        Events whose ids are in ``skip`` do not count (the store recorded others)."""
        await self._ensure_started()
        queue: asyncio.Queue[RunEvent] = asyncio.Queue()
        self._queues[run_id].append(queue)
        try:
            seen = 0
            latest = await self._last_state(run_id, skip)
            while True:
                if latest is not None and latest.seq > seen:
                    seen = latest.seq
                    if latest.state.type in TERMINAL_TYPES:
                        if latest.state.type is not StateType.CRASHED:
                            return latest
                        later = await _next(queue, seen, CRASH_SETTLE_SECONDS, skip)
                        if later is None:
                            return latest
                        latest = later
                        continue
                latest = await _next(queue, seen, None, skip)
        finally:
            self._queues[run_id].remove(queue)
            if not self._queues[run_id]:
                del self._queues[run_id]


async def last_state(js: Any, run_id: str, skip: frozenset[str] = frozenset()) -> RunEvent | None:
    """The run's latest state event already in the stream (by the run's own sequence)."""
    newest = await newest_state(js, run_id, skip)
    return newest.event if newest is not None else None


async def _next(
    queue: asyncio.Queue[RunEvent], after: int, within: float | None, skip: frozenset[str]
) -> Any:
    """The next event of the run after sequence ``after`` (None past ``within`` seconds),
    other than those in ``skip``."""
    while True:
        try:
            event = await asyncio.wait_for(queue.get(), within)
        except TimeoutError:
            return None
        if event.seq > after and str(event.id) not in skip:
            return event


__all__ = ["Event", "RunWaiters", "last_state"]
