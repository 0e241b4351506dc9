"""Which NATS node leads a stream (run on the cluster test's client host): ``python leader.py
STREAM``. Prints one JSON line: ``{"leader": "nats-h2", "replicas": 3}``."""

from __future__ import annotations

import asyncio
import json
import sys

from flowbus.broker.connection import connect


async def main(stream: str) -> dict[str, object]:
    client = await connect(name="leader-probe")
    try:
        info = await client.jetstream().stream_info(stream)
        cluster = info.cluster
        return {"leader": cluster.leader if cluster else None,
                "replicas": info.config.num_replicas}  # fmt: skip
    finally:
        await client.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
