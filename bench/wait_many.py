"""A service that submits many runs at once and then waits on each (``Client.wait``), as a
caller of flowbus from another service does: an embedded nats-server, the orchestrator and one
agent (concurrency 100) as separate processes, every event recorded in the SQLite store.

Prints one JSON line: runs/s from the first submit to the last wait's return, and the p50/p99
of submit -> wait returned.

    python bench/wait_many.py [--runs 300] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from b4_dispatch import percentile, served_deployment

from flowbus.client import Client


async def load(url: str, runs: int) -> dict[str, float]:
    async with Client(url) as client:
        await client.wait((await client.submit("noop/bench")).run_id, 60)  # warm: queues ready
        began = time.perf_counter()
        submitted = await asyncio.gather(*(client.submit("noop/bench") for _ in range(runs)))
        returned: list[float] = []

        async def wait(run_id: str) -> None:
            final = await client.wait(run_id, 120)
            assert final.name == "Completed", final
            returned.append(time.perf_counter())

        await asyncio.gather(*(wait(run.run_id) for run in submitted))
    latencies = sorted((t - began) * 1000 for t in returned)
    return {
        "runs": runs,
        "runs_per_second": runs / (max(returned) - began),
        "submit_to_wait_p50_ms": percentile(latencies, 0.5),
        "submit_to_wait_p99_ms": percentile(latencies, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    with served_deployment("b4_flows.py:noop", args.concurrency, "flowbus-wait-") as (url, _):
        figures = asyncio.run(load(url, args.runs))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
