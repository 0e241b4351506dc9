"""What the orchestrator publishes after a commit: run requests to their queues (the outbox),
and the events it recorded, for subscribers (the announcer).

The store is the outbox: a run recorded Scheduled whose request is not known to be published
is published again by the leader's janitor, and when a leader is elected every Scheduled run
is (its request's ``Nats-Msg-Id`` is ``<run>:<seq of the event that queued it>``, so JetStream
drops a copy inside its duplicate window, and a claim refuses a copy after it). A request is
published only after its run is committed.
"""

from __future__ import annotations

import asyncio

import structlog
from nats.aio.client import Client

from flowbus.agents.queue_service import QueueService
from flowbus.agents.run_entry import RunEntry
from flowbus.broker import protocol as p
from flowbus.broker import subjects, versions
from flowbus.broker.acked_publish import AckedPublisher
from flowbus.broker.errors import BrokerError
from flowbus.broker.event_sink import EventPublisher
from flowbus.engine.records import EventRecord
from flowbus.engine.states import StateType

log = structlog.get_logger("flowbus.orchestrator")


class Outbox:
    """Publishes run requests, and owns the fact that a run's request is in its queue."""

    def __init__(self, client: Client, queues: QueueService) -> None:
        self.publisher = AckedPublisher(client)
        self.queues = queues

    async def publish(self, entry: RunEntry, msg_id: str | None = None) -> bool:
        """Publish the run's request to its queue; True once JetStream has it (then the run
        is ``published``). Its message id (``msg_id``, by default ``<run>:<seq of the event
        that queued it>``) lets JetStream drop a copy; the queue audit gives a fresh one to a
        request JetStream lost. A failure is logged: the janitor publishes it again."""
        queued_seq = entry.queued_seq
        try:
            await self.queues.ensure(entry.queue)
            request = p.RunRequest(
                run_id=entry.run_id, deployment=entry.deployment, dispatch=queued_seq
            )
            await self.publisher.publish_one(
                subjects.run_subject(entry.queue),
                request.dump(),
                versions.with_version({"Nats-Msg-Id": msg_id or f"{entry.run_id}:{queued_seq}"}),
                patience=5,
            )
        except Exception as exc:  # the janitor publishes it again
            log.warning("could not publish a run request", run_id=entry.run_id, error=repr(exc))
            return False
        entry.mark_published(queued_seq)
        return True

    async def publish_if_queued(self, entry: RunEntry | None) -> None:
        """Publish the request of a run a decision queued (again), unless it is published."""
        if entry is not None and entry.state is StateType.SCHEDULED and not entry.published:
            await self.publish(entry)

    async def publish_again(self, entry: RunEntry, msg_id: str | None = None) -> bool:
        """Publish once more a request that may be lost: not known to be in its queue until
        this publish is acked (a failed one is released again by the next sweep)."""
        entry.foreign = False
        entry.mark_unpublished()
        return await self.publish(entry, msg_id)


class Announcer:
    """Publishes the events the ledger wrote, once committed, so subscribers see every state
    change: through a NATS restart too (the publisher retries until they are acked). They
    carry ``Flowbus-Recorded: <member>``, the orchestrator's name: the leader's recorder
    follows them without writing them (and skips its own process's)."""

    def __init__(self, client: Client, member: str) -> None:
        self.client = client
        self.member = member
        self._publisher: EventPublisher | None = None

    def __call__(self, records: list[EventRecord]) -> None:
        if self._publisher is None:  # made on first use, on the serving loop
            self._publisher = EventPublisher(self.client, asyncio.get_running_loop(),
                                             {subjects.RECORDED_HEADER: self.member})  # fmt: skip
        for record in records:
            self._publisher.submit(record)

    async def flush(self, timeout: float) -> None:  # noqa: ASYNC109 - a bound on stopping
        """What was announced last reaches subscribers too (at stop)."""
        if self._publisher is None:
            return
        try:
            await asyncio.wait_for(self._publisher.pump.flush_async(), timeout)
        except (BrokerError, TimeoutError) as exc:
            log.warning("recorded events not all published at stop", error=str(exc))


__all__ = ["Announcer", "Outbox"]
