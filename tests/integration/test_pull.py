"""The recorder's puller (broker/pull.py) on a real nats-server: a message is handed over when
it arrives, not when a batch fills or a request expires; the puller asks again after the server
restarts; a deleted consumer is reported, so the recorder binds again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from flowbus.broker import EmbeddedNatsServer
from flowbus.broker.connection import connect
from flowbus.broker.pull import Puller

from .stack import free_port

#: Long enough that a puller holding a message until a request expires or a batch fills would
#: make the test time out; a message must come back long before it.
FOREVER = 600.0


async def stream_and_consumer(client: Client) -> None:
    js = client.jetstream()
    await js.add_stream(name="T", subjects=["t.>"])
    config = ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT)
    await js.add_consumer("T", config)


async def until_received(puller: Puller, count: int) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < count:
        for message in await puller.next_batch(FOREVER):
            got.append(message.data)
            await message.ack()
    return got


@pytest.mark.timeout(120)
async def test_each_message_is_handed_over_as_it_arrives(
    nats_server: EmbeddedNatsServer,
) -> None:
    client = await connect(nats_server.url, name="test-puller")
    try:
        await stream_and_consumer(client)
        js = client.jetstream()
        # Requests that never fill and never expire in the test's time.
        puller = Puller(client, "T", "c", batch=500, expires=FOREVER, heartbeat=FOREVER / 4)
        await puller.open()
        for number in range(30):  # one at a time: each is wanted before the next is sent
            await js.publish("t.one", str(number).encode())
            assert await until_received(puller, 1) == [str(number).encode()]
        # A burst comes in batches of whatever has arrived, none missed, none twice.
        for number in range(300):
            await js.publish("t.many", str(number).encode())
        got = await until_received(puller, 300)
        assert got == [str(n).encode() for n in range(300)]
        await puller.close()
    finally:
        await client.close()


@pytest.mark.timeout(180)
async def test_a_restarted_server_is_asked_again(tmp_path: Path) -> None:
    server = EmbeddedNatsServer(tmp_path / "js", port=free_port()).start()
    client = None
    try:
        client = await connect(server.url, name="test-puller")
        await stream_and_consumer(client)
        puller = Puller(client, "T", "c", batch=10, expires=FOREVER, heartbeat=FOREVER / 4)
        await puller.open()
        server.stop()
        server.start()  # the same port and store: the request it held is gone
        js = client.jetstream()
        for _ in range(600):  # until the client is back (no wall clock: attempts)
            try:
                await js.publish("t.after", b"after", timeout=1)
                break
            except Exception:
                await asyncio.sleep(0.1)
        # Asked again on the reconnect: the message comes without waiting for a heartbeat.
        assert await until_received(puller, 1) == [b"after"]

        await js.delete_consumer("T", "c")
        with pytest.raises(NotFoundError):
            for _ in range(600):
                await puller.next_batch(0.1)
        await puller.close()
    finally:
        if client is not None:
            await client.close()
        server.stop()
