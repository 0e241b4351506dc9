"""The JetStream streams flowbus needs, declared in one place and created or updated on start."""

from __future__ import annotations

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
from nats.js.errors import BadRequestError, NotFoundError

from flowbus.broker import subjects

DAY = 24 * 3600


def stream_configs(replicas: int = 1) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            subjects=[subjects.EVENTS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,  # live tails and the recorder read the same events
            storage=StorageType.FILE,
            max_age=7 * DAY,
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


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the streams and buckets, or bring an existing one's settings up to date."""
    for config in stream_configs(replicas):
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
    await js.create_key_value(
        KeyValueConfig(bucket=subjects.QUEUES_BUCKET, history=5, replicas=replicas)
    )
    for bucket in (subjects.SCHEDULES_BUCKET, subjects.AUTOMATIONS_BUCKET):
        await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, replicas=replicas))


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
