"""Batches published to JetStream with their acks counted (``broker/acked_publish.py``), on a
real nats-server: a batch completes once every message is stored, a refusal fails it with
JetStream's reason, and batches in flight together complete each on its own acks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.errors import ConnectionClosedError
from nats.js.api import StreamConfig

from flowbus.broker import EmbeddedNatsServer
from flowbus.broker.acked_publish import AckedPublisher
from flowbus.broker.errors import BrokerError


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    with EmbeddedNatsServer(tmp_path / "jetstream", port=0) as server:
        connected = await nats.connect(server.url)
        await connected.jetstream().add_stream(
            StreamConfig(name="TEST", subjects=["test.>"], max_msg_size=1024)
        )
        try:
            yield connected
        finally:
            await connected.close()


async def stored(client: Client) -> int:
    return (await client.jetstream().stream_info("TEST")).state.messages


async def test_a_batch_completes_once_every_message_is_stored(client: Client) -> None:
    publisher = AckedPublisher(client)
    messages = [(f"test.{n}", b"x", {"Nats-Msg-Id": f"m{n}"}) for n in range(300)]
    await asyncio.wait_for(await publisher.publish(messages), 30)
    assert await stored(client) == 300
    # The same message ids again: JetStream answers duplicates with an ack, nothing is stored.
    await asyncio.wait_for(await publisher.publish(messages[:10]), 30)
    assert await stored(client) == 300


async def test_batches_in_flight_together_complete_on_their_own_acks(client: Client) -> None:
    publisher = AckedPublisher(client)
    batches = [await publisher.publish([(f"test.{b}.{n}", b"x", {}) for n in range(50)])
               for b in range(5)]  # fmt: skip
    await asyncio.wait_for(asyncio.gather(*batches), 30)
    assert await stored(client) == 250
    assert await asyncio.wait_for(await publisher.publish([]), 1) is None


async def test_a_refused_message_fails_its_batch_with_the_reason(client: Client) -> None:
    publisher = AckedPublisher(client)
    refused = [("test.a", b"x", {}), ("test.b", b"y" * 4096, {}), ("test.c", b"z", {})]
    with pytest.raises(BrokerError, match=r"JetStream refused a message: .*size"):
        await asyncio.wait_for(await publisher.publish(refused), 30)
    fine = await publisher.publish([("test.d", b"x", {})])  # the next batch is unaffected
    await asyncio.wait_for(fine, 30)


async def test_a_subject_in_no_stream_fails_its_batch(client: Client) -> None:
    publisher = AckedPublisher(client)
    with pytest.raises(BrokerError, match="no stream answered"):
        await asyncio.wait_for(await publisher.publish([("elsewhere.a", b"x", {})]), 30)


async def test_a_batch_given_up_on_is_forgotten(client: Client) -> None:
    publisher = AckedPublisher(client)
    batch = await publisher.publish([("test.a", b"x", {}), ("test.b", b"x", {})])
    publisher.forget(batch)
    batch.cancel()
    await asyncio.sleep(0.5)  # its acks arrive and are dropped
    await asyncio.wait_for(await publisher.publish([("test.c", b"x", {})]), 30)
    assert await stored(client) == 3


async def test_one_message_unanswered_times_out_and_is_forgotten(client: Client) -> None:
    """A subject someone listens on without answering (not a stream): no ack ever comes."""
    await client.subscribe("silent.>")
    publisher = AckedPublisher(client)
    with pytest.raises(TimeoutError):
        await publisher.publish_one("silent.a", b"x", {}, patience=0.5)
    assert publisher._waiting == {}
    await publisher.publish_one("test.a", b"x", {}, patience=30)
    assert await stored(client) == 1


async def test_a_batch_that_cannot_be_sent_leaves_nothing_waiting(client: Client) -> None:
    other = await nats.connect(client.connected_url.geturl() if client.connected_url else "")
    publisher = AckedPublisher(other)
    await publisher.publish_one("test.a", b"x", {}, patience=30)
    await other.close()
    with pytest.raises(ConnectionClosedError):
        await publisher.publish([("test.b", b"x", {}), ("test.c", b"x", {})])
    assert publisher._waiting == {}
