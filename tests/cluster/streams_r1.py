"""Make flowbus's streams and buckets with one replica, as a single-node installation has them
(run on the cluster test's client host before the daemons start; they bring them to three)."""

from __future__ import annotations

import asyncio

from flowbus.broker.connection import connect
from flowbus.broker.streams import ensure_streams


async def main() -> None:
    client = await connect(name="streams-r1")
    try:
        await ensure_streams(client.jetstream(), replicas=1)
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
    print("{}")
