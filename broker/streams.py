"""The JetStream streams flowbus needs, declared in one place and created or updated on start."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue

from flowbus.broker import subjects

DAY = 24 * 3600
T = TypeVar("T")


@dataclass(frozen=True)
class EventsLimits:
    """How much of the events stream JetStream keeps: by age, and optionally by size (the
    oldest dropped first). Every event is a message on a subject naming its run, so what the
    stream holds is also what nats-server holds in memory for its subjects."""

    max_age_seconds: float = 7 * DAY
    max_bytes: int | None = None


def configured_events_limits() -> EventsLimits:
    """``$FLOWBUS_EVENTS_MAX_AGE_HOURS`` and ``$FLOWBUS_EVENTS_MAX_BYTES`` (validated at a
    daemon's start), else the defaults."""
    hours = os.environ.get("FLOWBUS_EVENTS_MAX_AGE_HOURS")
    size = os.environ.get("FLOWBUS_EVENTS_MAX_BYTES")
    return EventsLimits(
        max_age_seconds=float(hours) * 3600 if hours else EventsLimits.max_age_seconds,
        max_bytes=int(size) if size else None,
    )


def stream_configs(replicas: int = 1, events: EventsLimits | None = None) -> list[StreamConfig]:
    events = events or EventsLimits()
    return [
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            subjects=[subjects.EVENTS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,  # live tails and the recorder read the same events
            storage=StorageType.FILE,
            max_age=events.max_age_seconds,
            max_bytes=events.max_bytes,
            duplicate_window=120,  # Nats-Msg-Id (the event id) dedupes retries within 2 minutes
            max_msg_size=1024 * 1024,
            discard=DiscardPolicy.OLD,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=subjects.RUNS_STREAM,
            subjects=[subjects.RUNS_SUBJECTS],
            # A request stays until an agent acks it (its run ended, or its claim was refused).
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=120,  # Nats-Msg-Id "<run>:<dispatch>" dedupes a republished request
            max_msg_size=1024 * 1024,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=subjects.CUSTOM_STREAM,
            subjects=[subjects.CUSTOM_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * DAY,
            duplicate_window=120,  # Nats-Msg-Id: the event's id
            max_msg_size=256 * 1024,
            discard=DiscardPolicy.OLD,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=subjects.DEAD_LETTER_STREAM,
            subjects=[subjects.DEAD_LETTER_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=30 * DAY,
            num_replicas=replicas,
        ),
    ]


def configured_replicas() -> int | None:
    """``$FLOWBUS_NATS_REPLICAS`` (validated at a daemon's start), or None when unset."""
    value = os.environ.get("FLOWBUS_NATS_REPLICAS")
    return int(value) if value else None


def replicas_for(known_servers: int, configured: int | None = None) -> int:
    """The replicas of flowbus's streams: as configured, else 3 on a cluster of at least 3
    servers, else 1 (a pure function of what the connection learnt)."""
    if configured is not None:
        return configured
    return 3 if known_servers >= 3 else 1


def known_servers(client: Client) -> int:
    """How many servers the connection knows of: the one it is connected to and those the
    cluster announced (INFO ``connect_urls``)."""
    info = getattr(client, "_server_info", None) or {}
    urls = set(info.get("connect_urls") or [])
    current = client.connected_url
    if current is not None:
        urls.add(f"{current.hostname}:{current.port}")
    return max(len(urls), 1)


async def oldest_event_time(js: JetStreamContext) -> datetime | None:
    """When the oldest event the events stream still holds was stored, if the stream has
    dropped any (its age or size limit): before that time it can no longer say what happened.
    None while it holds every event it was given."""
    state = (await js.stream_info(subjects.EVENTS_STREAM)).state
    if state.first_seq <= 1:
        return None
    if state.messages == 0:  # every event dropped: none older than now survives
        return datetime.now(UTC)
    oldest = await js.get_msg(subjects.EVENTS_STREAM, seq=state.first_seq, next=True,
                              subject=subjects.EVENTS_SUBJECTS)  # fmt: skip
    return oldest.time


async def ensure_streams(js: JetStreamContext, replicas: int | None = None) -> None:
    """Create the streams and buckets, or bring an existing one's settings (its replicas
    included) up to date."""
    if replicas is None:
        replicas = replicas_for(known_servers(js._nc), configured_replicas())
    admin = _admin(js)
    for config in stream_configs(replicas, configured_events_limits()):
        await _patiently(functools.partial(_ensure_stream, admin, config))
    await ensure_bucket(js, KeyValueConfig(bucket=subjects.QUEUES_BUCKET, history=5,
                                           replicas=replicas))  # fmt: skip
    for bucket in (subjects.SCHEDULES_BUCKET, subjects.AUTOMATIONS_BUCKET):
        await ensure_bucket(js, KeyValueConfig(bucket=bucket, history=1, replicas=replicas))


#: How long stream administration may take: a cluster electing its leaders, or moving a
#: stream to more replicas, answers slowly (nats-py's default is 5 s).
ADMIN_TIMEOUT = 20.0
ADMIN_PATIENCE = 120.0


def _admin(js: JetStreamContext) -> JetStreamContext:
    return js._nc.jetstream(timeout=ADMIN_TIMEOUT)


async def _patiently(action: Callable[[], Awaitable[T]]) -> T:
    """``action``, asked again while JetStream does not answer in time (a cluster electing a
    stream's leader, say); a refusal is not retried."""
    deadline = time.monotonic() + ADMIN_PATIENCE
    while True:
        try:
            return await action()
        except (NatsTimeoutError, TimeoutError, ServiceUnavailableError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError:  # it exists: its settings (replicas included) are updated
        await js.update_stream(config)


async def ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    """A key-value bucket, created, or its replicas brought to ``config``'s in place."""
    admin = _admin(js)

    async def ensure() -> KeyValue:
        try:
            return await admin.create_key_value(config)
        except BadRequestError:  # it exists with other settings: its stream is updated
            info = await admin.stream_info(f"KV_{config.bucket}")
            current = info.config
            if current.num_replicas != config.replicas:
                current.num_replicas = config.replicas
                await admin.update_stream(current)
            return await js.key_value(config.bucket)

    return await _patiently(ensure)


async def ensure_queue_consumer(
    js: JetStreamContext, queue: str, max_ack_pending: int, ack_wait: float
) -> None:
    """The durable consumer of one work queue, with the queue's concurrency limit.

    ``max_ack_pending`` is the number of runs of the queue in flight across every agent (each
    agent holds a run's request unacked while the run lasts); it is set explicitly because the
    server's default (1000) stalls silently when reached.
    """
    config = ConsumerConfig(
        durable_name=subjects.queue_consumer(queue),
        filter_subject=subjects.run_subject(queue),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_ack_pending=max_ack_pending,
        max_waiting=512,
    )
    try:
        info = await js.consumer_info(subjects.RUNS_STREAM, subjects.queue_consumer(queue))
    except NotFoundError:
        await js.add_consumer(subjects.RUNS_STREAM, config)
        return
    current = info.config
    if current.max_ack_pending != max_ack_pending or current.ack_wait != ack_wait:
        await js.add_consumer(subjects.RUNS_STREAM, config)  # same name: an update
