"""Queue consumers as the orchestrator makes them (agents/queue_service.py), against a real
nats-server: a burst of runs to a queue nobody used yet makes its consumer once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from flowbus.agents.queue_service import QueueService
from flowbus.broker import EmbeddedNatsServer
from flowbus.broker import protocol as p
from flowbus.broker.streams import ensure_streams
from flowbus.broker.subjects import RUNS_STREAM, queue_consumer
from flowbus.engine.store import store_from_url


@pytest.fixture
async def client(nats_server: EmbeddedNatsServer) -> AsyncIterator[Client]:
    connection = await nats.connect(nats_server.url)
    await ensure_streams(connection.jetstream())
    yield connection
    await connection.close()


class CountingQueues(QueueService):
    """The real service, counting how often it reads a queue's settings from the bucket."""

    reads = 0

    async def settings(self, name: str) -> p.QueueSettings:
        self.reads += 1
        return await super().settings(name)


async def test_a_burst_to_a_new_queue_makes_its_consumer_once(
    client: Client, tmp_path: Path
) -> None:
    """Two hundred runs published at once to a new queue: every publisher waits for the
    consumer, but only one asks the server for it (each asking made four requests)."""
    store = store_from_url(f"sqlite:///{tmp_path / 'flowbus.db'}")
    queues = CountingQueues(client.jetstream(), store, ack_wait=30.0, served=lambda: ())
    await queues.open()
    answers = await asyncio.gather(*(queues.ensure("burst") for _ in range(200)))
    assert queues.reads == 1
    assert all(answer == p.QueueSettings(name="burst") for answer in answers)
    info = await client.jetstream().consumer_info(RUNS_STREAM, queue_consumer("burst"))
    assert info.config.max_ack_pending is not None and info.config.max_ack_pending > 0
    # Made once: later runs to the queue ask nothing; a settings change makes it again.
    assert await queues.ensure("burst") is None
    await queues.ensure("burst", force=True)
    assert queues.reads == 2


async def test_a_caller_that_gives_up_does_not_stop_the_others(
    client: Client, tmp_path: Path
) -> None:
    """A publisher cancelled while the consumer is being made (its run's request timed out)
    leaves the making to the others waiting on it."""
    store = store_from_url(f"sqlite:///{tmp_path / 'flowbus.db'}")
    queues = CountingQueues(client.jetstream(), store, ack_wait=30.0, served=lambda: ())
    await queues.open()
    impatient = asyncio.ensure_future(queues.ensure("patience"))
    patient = asyncio.ensure_future(queues.ensure("patience"))
    await asyncio.sleep(0)
    impatient.cancel()
    assert await patient == p.QueueSettings(name="patience")
    assert queues.reads == 1
