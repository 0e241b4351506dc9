"""Work queues, as the orchestrator keeps them: their settings (priority, concurrency limit,
paused) in a NATS KV bucket every agent watches, and the JetStream consumer each queue's run
requests wait on, made the first time a run goes to the queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from nats.js.errors import KeyNotFoundError, NoKeysError, NotFoundError

from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.broker.streams import ensure_queue_consumer
from flowbus.engine.audit import audit_record
from flowbus.engine.store import EventStore

log = structlog.get_logger("flowbus.orchestrator")
#: A queue without a concurrency limit still needs an explicit max_ack_pending (see streams.py).
UNLIMITED_IN_FLIGHT = 10_000


class QueueService:
    """The requests ``flowbus.api.queues`` and ``flowbus.api.queue.update``, and the consumers
    of the queues runs are sent to."""

    def __init__(
        self,
        js: Any,
        store: EventStore,
        ack_wait: float,
        served: Callable[[], Iterable[str]],
    ) -> None:
        self.js = js
        self.store = store
        self.ack_wait = ack_wait
        #: The queues live agents serve (from their heartbeats).
        self.served = served
        self._kv: Any = None
        self._ready: set[str] = set()
        #: The queue consumers being made now: a burst of runs to a new queue waits on one.
        self._making: dict[str, asyncio.Future[p.QueueSettings]] = {}

    async def open(self) -> None:
        self._kv = await self.js.key_value(subjects.QUEUES_BUCKET)

    async def settings(self, name: str) -> p.QueueSettings:
        try:
            found = await self._kv.get(name)
        except KeyNotFoundError:
            found = None
        if found is None or not found.value:
            return p.QueueSettings(name=name)
        return p.QueueSettings.model_validate_json(found.value)

    async def ensure(self, name: str, force: bool = False) -> p.QueueSettings | None:
        """Make sure the queue's consumer exists (with its limit); once per queue unless
        ``force`` (its settings changed). Callers that arrive while it is being made wait for
        that one making rather than each asking the server again."""
        if name in self._ready and not force:
            return None
        making = self._making.get(name)
        if making is None or force:
            making = asyncio.ensure_future(self._make(name))
            self._making[name] = making
            making.add_done_callback(lambda done: self._made(name, done))
        # Shielded: a caller that gives up does not cancel the making the others wait on.
        return await asyncio.shield(making)

    async def _make(self, name: str) -> p.QueueSettings:
        settings = await self.settings(name)
        with contextlib.suppress(Exception):  # another orchestrator made it first: the same
            await self._kv.create(name, settings.dump())
        limit = settings.concurrency_limit or UNLIMITED_IN_FLIGHT
        await ensure_queue_consumer(self.js, name, limit, self.ack_wait)
        self._ready.add(name)
        return settings

    def _made(self, name: str, done: asyncio.Future[p.QueueSettings]) -> None:
        if self._making.get(name) is done:
            del self._making[name]
        if not done.cancelled() and done.exception() is not None:
            # Every waiter got the error; the next run to the queue tries again.
            log.warning("queue consumer not made", queue=name, error=str(done.exception()))

    async def _info(self, settings: p.QueueSettings) -> p.QueueInfo:
        try:
            info = await self.js.consumer_info(
                subjects.RUNS_STREAM, subjects.queue_consumer(settings.name)
            )
            waiting, in_flight = info.num_pending or 0, info.num_ack_pending or 0
        except NotFoundError:
            waiting = in_flight = 0
        return p.QueueInfo(settings=settings, waiting=waiting, in_flight=in_flight)

    async def list_queues(self, _: None) -> p.QueueList:
        """Every queue a user can act on: those with settings, those deployments name and those
        agents serve (before their first run, a queue has no settings yet)."""
        try:
            names = set(await self._kv.keys())
        except NoKeysError:
            names = set()
        names.update(d.queue for d in await self.store.list_deployments())
        names.update(self.served())
        infos = [await self._info(await self.settings(n)) for n in sorted(names)]
        return p.QueueList(queues=infos)

    async def update_queue(self, update: p.QueueUpdate) -> p.QueueUpdated:
        current = await self.settings(update.name)
        changes: dict[str, Any] = {}
        if update.priority is not None:
            changes["priority"] = update.priority
        if update.paused is not None:
            changes["paused"] = update.paused
        if update.concurrency_limit is not None:
            changes["concurrency_limit"] = update.concurrency_limit or None
        settings = current.model_copy(update=changes)
        await self._kv.put(update.name, settings.dump())
        await self.ensure(update.name, force=True)
        log.info("queue updated", **settings.model_dump())
        if update.actor:  # settings live in a bucket: who changed them is recorded here
            await self.store.append([audit_record("queue.updated", update.name, update.actor,
                                                  changes)])  # fmt: skip
        info = await self._info(settings)
        return p.QueueUpdated(**info.model_dump())
