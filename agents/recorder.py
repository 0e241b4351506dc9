"""The recorder: run events from JetStream into the store, in per-run order, each exactly once.

It pulls from one durable consumer, appends each batch to the store (events and projections in
one transaction), and acks only after the commit. A redelivered event is a no-op in the store;
a malformed, oversized or unknown message, or one whose subject disagrees with its body, is
logged, counted, dead-lettered to ``flowbus.dead.recorder`` and terminated: the recorder keeps
serving.

Events an agent publishes for a run it holds carry the run and the claim's attempt in headers;
they pass through the orchestrator's ledger (``ledger.py``), which refuses (dead-letters as
"fenced") those of an attempt that no longer holds the run. An event of a deployment's run (or
a subflow under one) without a fence, and an event of a store-only type (a deployment, a
document, an automation's), was not published by a run's holder: it is refused the same way
(``fenced_streams.py``). Events the orchestrator recorded itself and published for subscribers
are acked without a second write; the ledger follows those the store really holds, so the
leader's copy of each run keeps up with what every orchestrator decides.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from dataclasses import dataclass

import orjson
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError, ServiceUnavailableError

from flowbus.agents import telemetry
from flowbus.agents.fenced_streams import FencedStreams, store_only
from flowbus.agents.ledger import RunLedger
from flowbus.agents.lifecycle import Daemon, Loop
from flowbus.agents.restore_catch_up import RestoreCatchUp
from flowbus.broker import subjects, versions
from flowbus.broker.dead_letters import dead_letter
from flowbus.broker.fencing import FenceChecker
from flowbus.broker.pull import Puller
from flowbus.broker.streams import ensure_streams, oldest_event_time
from flowbus.engine.errors import SequenceError, StoreError
from flowbus.engine.events import DecodeError, decode_event
from flowbus.engine.records import EventRecord
from flowbus.engine.store import EventStore
from flowbus.engine.store.backup import pending_reconciliation, reconciled

log = structlog.get_logger("flowbus.recorder")

#: The (run, attempt) an agent's event is published under, if any.
Fence = tuple[str, int] | None


async def _unsubscribe(subscription: Puller | None) -> None:
    """Undo a subscription (a closed connection has nothing to undo)."""
    if subscription is not None:
        with contextlib.suppress(Exception):
            await subscription.close()


@dataclass(frozen=True)
class RecorderSettings:
    batch_size: int = 500
    max_message_bytes: int = 1024 * 1024
    ack_wait: float = 30.0
    #: A message whose run has a gap before it is retried after this many seconds.
    retry_delay: float = 1.0
    #: How long one fetch waits for a first event (then the loop looks at ``stopping``).
    wait_seconds: float = 1.0


class Recorder(Daemon):
    """Consume the events stream into ``store`` until ``stop()`` is called."""

    name = "recorder"
    #: A batch being recorded at ``stop()`` is committed and acked before the loop ends.
    grace = 10.0

    def __init__(
        self,
        client: Client,
        store: EventStore,
        settings: RecorderSettings | None = None,
        ledger: RunLedger | None = None,
        fences: FenceChecker | None = None,
        own: str | None = None,
    ) -> None:
        """``own``: this orchestrator's name in the ``Flowbus-Recorded`` header of what it
        announces (its ledger holds those already: they are acked unread)."""
        super().__init__()
        self.own = own
        self.client = client
        self.store = store
        self.settings = settings or RecorderSettings()
        self.ledger = ledger or RunLedger(store)
        self.fenced_streams = FencedStreams(store)
        #: Checks that a fenced event was published by the agent granted its attempt.
        self.fences = fences or FenceChecker()
        self.counts: Counter[str] = Counter()
        #: After a restore of the store: the events it missed, recorded from the stream.
        self.catch_up: RestoreCatchUp | None = None

    async def _subscription(self) -> Puller:
        js = self.client.jetstream()
        await ensure_streams(js)
        config = ConsumerConfig(
            durable_name=subjects.RECORDER_CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.settings.ack_wait,
            max_ack_pending=self.settings.batch_size * 4,  # the server default (1000) stalls
            filter_subject=subjects.EVENTS_SUBJECTS,
        )
        since = await pending_reconciliation(self.store)
        if since is not None:
            # The store was restored from a backup: record again what the stream holds from a
            # minute before it was taken (what the store has is recorded as a no-op).
            log.warning("store restored: recording the events stream again", since=since)
            oldest = await oldest_event_time(js)
            if oldest is not None and oldest > since:
                # Dropped by the stream's limits (FLOWBUS_EVENTS_MAX_AGE_HOURS / _MAX_BYTES):
                # what happened between the backup and that event is not in the store.
                log.error("the events stream no longer holds every event since the backup: "
                          "what happened in between is missing from the restored store",
                          since=since.isoformat(), oldest_held=oldest.isoformat())  # fmt: skip
            with contextlib.suppress(NotFoundError):
                await js.delete_consumer(subjects.EVENTS_STREAM, subjects.RECORDER_CONSUMER)
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = since
            await js.add_consumer(subjects.EVENTS_STREAM, config)
            last = (await js.stream_info(subjects.EVENTS_STREAM)).state.last_seq
            self.catch_up = RestoreCatchUp(self.ledger, last, self._record_batch)
            await reconciled(self.store)
            return await self._pull()
        try:
            info = await js.consumer_info(subjects.EVENTS_STREAM, subjects.RECORDER_CONSUMER)
        except NotFoundError:
            await js.add_consumer(subjects.EVENTS_STREAM, config)
        else:
            if info.num_ack_pending:
                # Delivered to a recorder that is gone (a leader killed mid-batch): JetStream
                # would hold them back for the whole ack wait. Start again after the last
                # event acked in order; what was recorded since is recorded again as a no-op.
                start = (info.ack_floor.stream_seq if info.ack_floor else 0) or 0
                log.info("recording again from the consumer's ack floor", after=start,
                         pending=info.num_ack_pending)  # fmt: skip
                await js.delete_consumer(subjects.EVENTS_STREAM, subjects.RECORDER_CONSUMER)
                config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
                config.opt_start_seq = start + 1
                await js.add_consumer(subjects.EVENTS_STREAM, config)
        return await self._pull()

    async def _pull(self) -> Puller:
        # Each event as it arrives (``broker/pull.py``): a run's end is recorded at once.
        puller = Puller(self.client, subjects.EVENTS_STREAM, subjects.RECORDER_CONSUMER,
                        batch=self.settings.batch_size)  # fmt: skip
        await puller.open()
        return puller

    def loops(self) -> dict[str, Loop]:
        return {"record": self._record}

    async def _record(self) -> None:
        """Record until stopped; connection trouble is waited out with a backoff. The
        subscription is undone at the end, so a later term of this orchestrator binds again."""
        # Bound inside the loop: a leader elected while JetStream elects its own leaders
        # waits for the consumer rather than failing (and leaving nothing recorded).
        subscription: Puller | None = None
        backoff = 0.1
        try:
            while not self.stopping:
                try:
                    if subscription is None:
                        subscription = await self._subscription()
                    messages = await subscription.next_batch(self.settings.wait_seconds)
                    if not messages:
                        continue
                except (TimeoutError, NatsTimeoutError):
                    continue
                except (ServiceUnavailableError, NotFoundError) as exc:
                    # The consumer is gone (the leader before this one, stepping down late,
                    # deleted it to record again from its ack floor): bind to it anew.
                    log.warning("the recorder's consumer is gone; binding again",
                                error=repr(exc), wait=backoff)  # fmt: skip
                    await _unsubscribe(subscription)
                    subscription = None
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                except Exception as exc:  # a leader election, a reconnect: wait, do not spin
                    log.warning("fetch failed; retrying", error=repr(exc), wait=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                await self.handle(messages)
        finally:
            await _unsubscribe(subscription)

    async def handle(self, messages: list[Msg]) -> None:
        """Record one fetched batch; ack, nak or dead-letter every message of it."""
        if self.catch_up is not None:
            await self.catch_up.handle(messages)
        else:
            await self._record_batch(messages)

    async def _record_batch(self, messages: list[Msg]) -> None:
        checked, recorded = await self._sort(messages)
        if recorded:
            await self.ledger.observe(recorded)
        if not checked:
            return
        admitted, fenced = await self.ledger.admit([(record, f) for _, record, f in checked])
        for index, reason in fenced:
            self.counts["fenced"] += 1
            await self._dead_letter(checked[index][0], f"fenced: {reason}")
        good = [(checked[i][0], checked[i][1]) for i in admitted]
        if not good:
            return
        try:
            await self.ledger.writer.append([record for _, record in good])
            telemetry.recorded((record for _, record in good), self.ledger.queued_at)
        except SequenceError:
            await self._by_run(good)
            return
        except StoreError as exc:  # locked or full: nothing was written; try again later
            log.error("store refused a batch; retrying later", error=str(exc), count=len(good))
            await self.ledger.reload({record.stream_id for _, record in good})
            for message, _ in good:
                await message.nak(delay=self.settings.retry_delay)
            self.counts["retried"] += len(good)
            return
        for message, _ in good:
            await message.ack()
        self.counts["recorded"] += len(good)

    async def _sort(
        self, messages: list[Msg]
    ) -> tuple[list[tuple[Msg, EventRecord, Fence]], list[EventRecord]]:
        """(events to record, events the store already holds); the rest are dead-lettered."""
        checked: list[tuple[Msg, EventRecord, Fence]] = []
        recorded: list[EventRecord] = []
        for message in messages:
            recorder = message.headers.get(subjects.RECORDED_HEADER) if message.headers else None
            if recorder:
                # An orchestrator's own decision, already in the store: the ledger follows it
                # (another orchestrator's claim, say), nothing is written again; one this
                # process announced, its ledger has already.
                if recorder != self.own:
                    with contextlib.suppress(ValueError, KeyError):
                        recorded.append(EventRecord.from_body(message.data))
                await message.ack()
                continue
            problem, record, fence = self._check(message)
            if record is not None and fence is None and await self.fenced_streams.required(record):
                self.counts["fenced"] += 1
                problem = f"unfenced: run {record.stream_id} is run by a deployment's agent"
                record = None
            if record is None:
                await self._dead_letter(message, problem)
            else:
                checked.append((message, record, fence))
        return checked, recorded

    def _check(self, message: Msg) -> tuple[str, EventRecord | None, Fence]:
        if len(message.data) > self.settings.max_message_bytes:
            return f"oversized: {len(message.data)} bytes", None, None
        mismatch, tolerant = versions.reading(message.headers)
        if mismatch is not None:
            return f"protocol: {mismatch}", None, None
        try:
            # Validated from the bytes (pydantic's own JSON parser is several times faster than
            # validating the parsed dict: this is every event's path), the model kept. What a
            # newer minor version adds is set aside here, and stored as it came.
            event = decode_event(message.data, tolerant=tolerant)
        except DecodeError as exc:
            return f"malformed: {exc}", None, None
        if store_only(event.type):
            return (
                f"store-only: {event.type} is written by flowbus itself, not recorded",
                None,
                None,
            )
        expected = subjects.event_subject(str(event.stream_id), event.type)
        if message.subject != expected:
            problem = f"subject {message.subject!r} does not match the event ({expected!r})"
            return problem, None, None
        fence: Fence = None
        headers = message.headers or {}
        if subjects.RUN_HEADER in headers:
            try:
                fence = (headers[subjects.RUN_HEADER], int(headers[subjects.ATTEMPT_HEADER]))
            except (KeyError, ValueError):
                return "malformed fencing headers", None, None
            forged = self.fences.problem(*fence, message.data, headers)
            if forged:
                return f"fenced: {forged}", None, None
        return "", EventRecord.from_data(orjson.loads(message.data), model=event), fence

    async def _by_run(self, good: list[tuple[Msg, EventRecord]]) -> None:
        """A batch with a sequence problem: record stream by stream, so one cannot block others."""
        by_stream: dict[str, list[tuple[Msg, EventRecord]]] = defaultdict(list)
        for item in good:
            by_stream[item[1].stream_id].append(item)
        for stream_id, items in by_stream.items():
            try:
                await self.ledger.writer.append([record for _, record in items])
            except SequenceError as exc:
                await self.ledger.reload([stream_id] if stream_id in self.ledger.entries else [])
                if exc.got > exc.expected:  # an earlier event of the stream is still to come
                    for message, _ in items:
                        await message.nak(delay=self.settings.retry_delay)
                    self.counts["retried"] += len(items)
                else:  # another event already holds this place in the run: a conflict
                    for message, _ in items:
                        await self._dead_letter(message, f"conflicting event: {exc}")
                continue
            for message, _ in items:
                await message.ack()
            self.counts["recorded"] += len(items)

    async def _dead_letter(self, message: Msg, reason: str) -> None:
        self.counts["dead_lettered"] += 1
        limit = self.settings.max_message_bytes // 2
        await dead_letter(self.client.jetstream(), "recorder", message, reason, terminate=True,
                          limit=limit)  # fmt: skip
