"""JetStream publishes whose acks are counted per batch, not awaited one future each.

Every event flowbus publishes (an agent's, the orchestrator's announcements) goes to JetStream
and must be acknowledged before it counts as published. nats-py's ``publish_async`` pays, per
message, a random token from the operating system, a semaphore wait, a future with its
callbacks, and a JSON parse of the ack into a dataclass; in a burst that was a large share of an
event's cost. Here a batch is published with one reply subject per message under one inbox
subscription (a counter names each), and the batch is one future: it completes when every
message of it is acknowledged, or fails with the first refusal. An ack is read only as far as
telling a refusal (``"error"``, or no stream answering) from a success.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from flowbus.broker.errors import BrokerError

#: The status header of a request no stream answered (its subject is in no stream).
_NO_RESPONDERS = "503"


class _Batch:
    """One batch's acks still to come, and the future its publisher awaits."""

    __slots__ = ("future", "left", "tokens")

    def __init__(self, future: asyncio.Future[None], size: int) -> None:
        self.future = future
        self.left = size
        self.tokens: list[str] = []


class AckedPublisher:
    """Publishes batches of messages to JetStream on ``client``; ``publish`` returns a future
    that completes once JetStream acknowledged all of them (``BrokerError`` on a refusal)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._prefix = ""
        self._subscription: Any = None
        self._waiting: dict[str, _Batch] = {}
        self._numbers = itertools.count(1)

    async def _open(self) -> None:
        # Under the connection's inbox prefix: a user of `flowbus auth` may read only its own.
        self._prefix = self.client.new_inbox() + "."
        self._subscription = await self.client.subscribe(self._prefix + "*", cb=self._acked)

    async def publish(
        self, messages: list[tuple[str, bytes, dict[str, str]]]
    ) -> asyncio.Future[None]:
        """Publish ``messages`` (subject, payload, headers) in order; the future completes when
        all are acknowledged. A caller that gives up on it calls ``forget``."""
        if self._subscription is None:
            await self._open()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch = _Batch(future, len(messages))
        if not messages:
            future.set_result(None)
            return future
        try:
            for subject, payload, headers in messages:
                token = str(next(self._numbers))
                batch.tokens.append(token)
                self._waiting[token] = batch
                await self.client.publish(subject, payload, reply=self._prefix + token,
                                          headers=headers)  # fmt: skip
        except BaseException:  # the connection closed, say: nothing waits for these acks
            self._drop(batch)
            raise
        return future

    async def publish_one(
        self, subject: str, payload: bytes, headers: dict[str, str], patience: float
    ) -> None:
        """Publish one message and wait for its ack: ``BrokerError`` when refused,
        ``TimeoutError`` after ``patience`` seconds without an answer."""
        future = await self.publish([(subject, payload, headers)])
        try:
            async with asyncio.timeout(patience):
                await future
        except TimeoutError:
            self.forget(future)
            raise

    def forget(self, future: asyncio.Future[None]) -> None:
        """Stop waiting for the acks of the batch behind ``future`` (a timeout, a reconnect)."""
        batch = next((b for b in self._waiting.values() if b.future is future), None)
        if batch is not None:
            self._drop(batch)

    def _drop(self, batch: _Batch) -> None:
        for token in batch.tokens:
            self._waiting.pop(token, None)

    async def _acked(self, message: Msg) -> None:
        token = message.subject[len(self._prefix) :]
        batch = self._waiting.pop(token, None)
        if batch is None or batch.future.done():
            return
        problem = _refusal(message)
        if problem is not None:
            self._drop(batch)
            batch.future.set_exception(BrokerError(problem))
            return
        batch.left -= 1
        if batch.left == 0:
            batch.future.set_result(None)


def _refusal(message: Msg) -> str | None:
    """Why JetStream refused a message, from its ack; None for an ack."""
    if message.headers and message.headers.get("Status") == _NO_RESPONDERS:
        return "no stream answered (is the subject in a stream?)"
    data = message.data
    if b'"error"' not in data:
        return None
    try:
        error = json.loads(data).get("error") or {}
    except ValueError:
        return f"unreadable JetStream answer: {data[:200]!r}"
    return f"JetStream refused a message: {error.get('description', error)}"


__all__ = ["AckedPublisher"]
