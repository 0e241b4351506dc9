"""Taking run requests from work queues: strict priority, never more than there is room for,
never a lingering pull.

An agent asks a queue's durable consumer for one request at a time with a ``no_wait`` pull:
the server answers at once with a request or "404 no messages", so the agent can try its queues
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
        self._answer = asyncio.Event()
        self._no_messages = False
        self._lock = asyncio.Lock()
        self._subs: list[Subscription] = []

    async def start(self, doorbell: asyncio.Event) -> None:
        """Listen for answers, and ring ``doorbell`` whenever a request is published."""

        async def on_answer(msg: Msg) -> None:
            if msg.data or not msg.headers or "Status" not in msg.headers:
                self._delivered.append(msg)
            elif msg.headers["Status"] in ("404", "408", "409"):
                self._no_messages = True
            self._answer.set()

        async def on_publish(_: Msg) -> None:
            doorbell.set()

        self._subs.append(await self.client.subscribe(self._inbox, cb=on_answer))
        self._subs.append(
            await self.client.subscribe(subjects.run_subject(self.queue), cb=on_publish)
        )

    async def take(self, n: int) -> list[Msg]:
        """Up to ``n`` requests that are in the queue now; an empty or full queue gives none."""
        async with self._lock:
            taken: list[Msg] = []
            while len(taken) < n:
                if self._delivered:
                    taken.append(self._delivered.popleft())
                    continue
                self._answer.clear()
                self._no_messages = False
                await self.client.publish(self._api, _NEXT_REQUEST, reply=self._inbox)
                try:
                    await asyncio.wait_for(self._answer.wait(), self.probe_timeout)
                except TimeoutError:
                    break  # at its concurrency limit (or the server is away): the queue is full
                if self._no_messages and not self._delivered:
                    break
            return taken

    async def stop(self) -> None:
        """Stop listening; requests taken but not handed out go back to the queue."""
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs.clear()
        while self._delivered:
            await self._delivered.popleft().nak()
