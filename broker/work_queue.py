"""Taking run requests from work queues: strict priority, never more than there is room for,
never a lingering pull.

An agent asks a queue's durable consumer for requests with ``no_wait`` pulls of one request
each (sent together): the server answers each at once with a request or "404 no messages"
(a pull of several may end without a word), so the agent can try its queues
in priority order and never holds a pull that could hand it work it has no room for. It learns
that something arrived from a plain subscription on the queue's subject (a JetStream publish is
also delivered to core subscribers): a doorbell, so a new request is taken within a round trip
of its publication without polling.

When the queue's concurrency limit (the consumer's ``max_ack_pending``) is reached the server
does not answer a ``no_wait`` pull at all; the probe then gives up after ``probe_timeout`` and the
queue counts as full. A request that still arrives for such a probe is kept for the next take.
"""

from __future__ import annotations

import asyncio
import collections

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from flowbus.broker import subjects

_NEXT_REQUEST = orjson.dumps({"batch": 1, "no_wait": True})


class QueueTaker:
    """One agent's handle on one work queue."""

    def __init__(self, client: Client, queue: str, probe_timeout: float = 0.05) -> None:
        self.client = client
        self.queue = queue
        self.probe_timeout = probe_timeout
        self._inbox = client.new_inbox()
        self._api = (
            f"$JS.API.CONSUMER.MSG.NEXT.{subjects.RUNS_STREAM}.{subjects.queue_consumer(queue)}"
        )
        self._delivered: collections.deque[Msg] = collections.deque()
        self._answers = 0
        self._answered = asyncio.Event()
        self._lock = asyncio.Lock()
        self._subs: list[Subscription] = []

    async def start(self, doorbell: asyncio.Event) -> None:
        """Listen for answers, and ring ``doorbell`` whenever a request is published."""

        async def on_answer(msg: Msg) -> None:
            if msg.data or not msg.headers or "Status" not in msg.headers:
                self._delivered.append(msg)
            self._answers += 1  # a request, or "no messages" (each probe gets one answer)
            self._answered.set()

        async def on_publish(_: Msg) -> None:
            doorbell.set()

        self._subs.append(await self.client.subscribe(self._inbox, cb=on_answer))
        subject = subjects.run_subject(self.queue)
        self._subs.append(await self.client.subscribe(subject, cb=on_publish))

    async def take(self, n: int) -> list[Msg]:
        """Up to ``n`` requests that are in the queue now; an empty or full queue gives none.

        The ``n`` one-request probes go out together: one round trip, whatever ``n``.
        """
        async with self._lock:
            taken: list[Msg] = []
            while self._delivered and len(taken) < n:
                taken.append(self._delivered.popleft())
            wanted = n - len(taken)
            if wanted == 0:
                return taken
            self._answers = 0
            for _ in range(wanted):
                await self.client.publish(self._api, _NEXT_REQUEST, reply=self._inbox)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.probe_timeout
            while self._answers < wanted:
                self._answered.clear()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break  # at its concurrency limit (or the server is away): the queue is full
                try:
                    await asyncio.wait_for(self._answered.wait(), remaining)
                except TimeoutError:
                    break
            while self._delivered and len(taken) < n:
                taken.append(self._delivered.popleft())
            return taken

    async def stop(self) -> None:
        """Stop listening; requests taken but not handed out go back to the queue."""
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs.clear()
        while self._delivered:
            await self._delivered.popleft().nak()
