"""A durable pull consumer's messages as they arrive, in the batches they arrive in.

nats-py's ``fetch(n)`` returns once it has ``n`` messages, the server says none are left, or
its timeout passes. When a pull request that waited for messages got fewer than ``n``, the
server does not always say so at once, and ``fetch`` then holds the messages it has until its
timeout: one run's final event in several hundred sat up to a second in the recorder.

Here one pull request is outstanding at a time and messages are handed over as soon as they
arrive: ``next_batch`` waits for the first one, then takes every other one already received,
without waiting for more. A new request is made when the last one is used up, expired or ended
by the server, after a reconnect (the server that held it may have restarted) and when its idle
heartbeats stop coming (a request lost on the way).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from flowbus.broker.connection import connection_log

#: Status codes that end a pull request (the request expired, the server has no more for a
#: no-wait request, or a conflict such as a leader change or too many waiting requests).
_ENDS_REQUEST = {"404", "408", "409"}
_HEARTBEAT = "100"


class Puller:
    """The messages of the durable consumer ``durable`` of ``stream``, as they come."""

    def __init__(
        self,
        client: Client,
        stream: str,
        durable: str,
        batch: int = 500,
        expires: float = 30.0,
        heartbeat: float = 2.0,
    ) -> None:
        self.client = client
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.batch = batch
        self.expires = expires
        self.heartbeat = heartbeat
        self._received: list[Msg] = []
        self._arrived = asyncio.Event()
        self._outstanding = 0
        self._last_heard = 0.0
        self._inbox = ""
        self._subscription: Any = None
        self._gone: str | None = None

    async def open(self) -> None:
        self._inbox = self.client.new_inbox()
        self._subscription = await self.client.subscribe(self._inbox, cb=self._take)
        events = connection_log(self.client)
        if events is not None:
            events.on_reconnect.append(self._reconnected)
        await self._ask()

    async def close(self) -> None:
        events = connection_log(self.client)
        if events is not None and self._reconnected in events.on_reconnect:
            events.on_reconnect.remove(self._reconnected)
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await subscription.unsubscribe()

    async def next_batch(self, timeout: float) -> list[Msg]:  # noqa: ASYNC109
        """The messages received so far (at least one), or none after ``timeout`` seconds."""
        if not self._received:
            # Cleared before asking: a message taken while the request is sent still wakes us.
            self._arrived.clear()
            await self._ask_if_needed()
            if not self._received:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), timeout)
        if self._gone is not None:
            raise NotFoundError(description=self._gone)
        messages, self._received = self._received, []
        await self._ask_if_needed()
        return messages

    async def _ask_if_needed(self) -> None:
        """A new request when the last one is used up or ended, or went silent."""
        silent = time.monotonic() - self._last_heard > 2 * self.heartbeat
        if self._outstanding <= 0 or silent:
            await self._ask()

    async def _ask(self) -> None:
        request = {"batch": self.batch, "expires": int(self.expires * 1e9),
                   "idle_heartbeat": int(self.heartbeat * 1e9)}  # fmt: skip
        self._outstanding = self.batch
        self._last_heard = time.monotonic()
        await self.client.publish(self.subject, orjson.dumps(request), reply=self._inbox)

    def _reconnected(self) -> None:
        self._outstanding = 0  # asked again at the next batch
        self._arrived.set()

    async def _take(self, message: Msg) -> None:
        self._last_heard = time.monotonic()
        status = message.headers.get("Status") if message.headers else None
        if status is None:
            self._outstanding -= 1
            self._received.append(message)
        elif status == _HEARTBEAT:
            return
        elif status in _ENDS_REQUEST:
            self._outstanding = 0
            description = (message.headers or {}).get("Description", "")
            if "consumer deleted" in description.lower():
                self._gone = description
        else:  # 503 and the like: the stream is not ready; ask again
            self._outstanding = 0
        self._arrived.set()


__all__ = ["Puller"]
