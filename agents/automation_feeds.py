"""What the automation engine follows: custom events always, runs' state changes only while an
enabled automation could want them.

Every state change of every run is a message on the events stream. A durable consumer that
delivers each one to the engine costs every run four deliveries and four acks, in the leader's
process and its nats-server, even when no automation looks at them (a new user's case, and
most users'). So the consumer of run states exists only while an automation could match such
an event (``wants_run_states``): it is made when the first such automation is seen (before the
engine answers the change's announcement, so an event published after that answer reaches
it) and deleted when the last one goes: a consumer left behind would hold the events of the
time without one, and deliver them to the next automation as if they were new.

A consumer made anew starts at the earliest save of the automations that want it (none of them
existed before that; the consumer did not exist a moment ago, so none wanted run states
then), and never more than a minute back. While it is followed, it is looked up now and
then: one deleted by an engine that did not yet know it had stepped down is made again from
the last time it was seen, its events delivered again firing nothing twice (a firing is
recorded under (automation, event) before it acts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from flowbus.broker import subjects

log = structlog.get_logger("flowbus.automations")

#: The durable consumers: custom events, and runs' state changes.
CUSTOM = (subjects.CUSTOM_STREAM, "automations-custom", subjects.CUSTOM_SUBJECTS)
RUN_STATES = (subjects.EVENTS_STREAM, "automations-runs", "flowbus.event.*.flow_run.state")
#: A run-state consumer made anew never starts further back than this.
LOOKBACK = timedelta(minutes=1)
#: How often a followed run-state consumer is looked up (seconds).
CHECK_EVERY = 5.0

Handler = Callable[[Msg], Awaitable[None]]


def _config(durable: str, start: datetime | None) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=durable,
        deliver_policy=DeliverPolicy.NEW if start is None else DeliverPolicy.BY_START_TIME,
        opt_start_time=start,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=60,
        max_ack_pending=1000,
    )


class AutomationFeeds:
    """The engine's durable consumers, pushed to ``handle`` one message at a time in order (an
    event is considered the moment it is stored; a pull fetch can linger for its timeout)."""

    def __init__(self, js: JetStreamContext, handle: Handler) -> None:
        self.js = js
        self.handle = handle
        self._custom: Any = None
        self._runs: Any = None
        #: When the run-state consumer was last known to exist (monotonic, and wall clock).
        self._seen: tuple[float, datetime] | None = None
        #: Whether the run-state consumer is known not to exist (deleted, or found missing).
        self._absent = False
        #: One change of the run-state subscription at a time (an announced change and the
        #: engine's own look may come together: two subscriptions would deliver each twice).
        self._changing = asyncio.Lock()

    async def open(self) -> None:
        """Follow custom events (from where the engine was, the first time from now)."""
        self._custom = await self._subscribe(CUSTOM, None)

    async def follow_runs(self, wanted_since: datetime | None) -> None:
        """Follow runs' state changes while ``wanted_since`` (the earliest save of the
        automations that want them) is given; stop, and delete the consumer, when it is not."""
        async with self._changing:
            await self._follow_runs(wanted_since)

    async def _follow_runs(self, wanted_since: datetime | None) -> None:
        stream, durable, _ = RUN_STATES
        if wanted_since is None:
            if self._absent:
                return
            subscription, self._runs, self._seen = self._runs, None, None
            if subscription is not None:
                await subscription.unsubscribe()
            try:
                await self.js.delete_consumer(stream, durable)
                log.info("no automation wants runs' state changes: not following them")
            except NotFoundError:
                pass
            self._absent = True
            return
        if self._runs is None:
            start = max(wanted_since, datetime.now(UTC) - LOOKBACK)
            self._runs = await self._subscribe(RUN_STATES, start)
            self._seen, self._absent = (time.monotonic(), datetime.now(UTC)), False
            return
        await self._check()

    async def _check(self) -> None:
        """Make the followed consumer again if it is gone (another engine deleted it)."""
        assert self._seen is not None
        looked_at, seen = self._seen
        if time.monotonic() - looked_at < CHECK_EVERY:
            return
        stream, durable, _ = RUN_STATES
        now = datetime.now(UTC)
        try:
            await self.js.consumer_info(stream, durable)
        except NotFoundError:
            log.warning("the run-state consumer is gone: made again", since=seen.isoformat())
            subscription, self._runs = self._runs, None
            await subscription.unsubscribe()
            self._runs = await self._subscribe(RUN_STATES, seen - timedelta(seconds=1))
        self._seen = (time.monotonic(), now)

    async def _subscribe(self, feed: tuple[str, str, str], start: datetime | None) -> Any:
        stream, durable, subject = feed
        return await self.js.subscribe(
            subject, durable=durable, stream=stream, config=_config(durable, start),
            cb=self.handle, manual_ack=True,
        )  # fmt: skip

    def subscriptions(self) -> list[Any]:
        """The subscriptions, for a step-down to end (the durable consumers stay)."""
        found = [s for s in (self._custom, self._runs) if s is not None]
        self._custom = self._runs = self._seen = None
        self._absent = False
        return found


__all__ = ["CUSTOM", "RUN_STATES", "AutomationFeeds"]
