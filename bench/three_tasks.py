"""A flow of three trivial tasks through the queue, as a service calls it: submit, then wait for
the result (``Client.submit`` + ``Client.wait``), one at a time and then 200 at once. An
embedded nats-server, the orchestrator and one agent (concurrency 100) as separate processes,
every event recorded in the SQLite store.

Prints one JSON line: submit -> result p50/p99 one at a time, flows/s with 200 at once, and
where the time of one call goes (medians of the gaps between the run's recorded states).

    python bench/three_tasks.py [--sequential 200] [--burst 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from b4_dispatch import percentile, served_deployment
from run_phases import phases

from flowbus.client import Client


async def load(url: str, sequential: int, burst: int, db: Path) -> dict[str, object]:
    async with Client(url) as client:
        await client.wait((await client.submit("three-tasks/bench")).run_id, 60)  # warm
        calls: dict[str, tuple[float, float]] = {}
        latencies = []
        for _ in range(sequential):
            began = time.time()
            run = await client.submit("three-tasks/bench", {"x": 1})
            final = await client.wait(run.run_id, 60)
            assert final.result == "4", final
            calls[run.run_id] = (began, time.time())
            latencies.append((time.time() - began) * 1000)
        started = time.perf_counter()
        runs = await asyncio.gather(*(client.submit("three-tasks/bench") for _ in range(burst)))
        await asyncio.gather(*(client.wait(run.run_id, 120) for run in runs))
        burst_seconds = time.perf_counter() - started
    await asyncio.sleep(1.0)  # the store catches up with the last events
    return {
        "sequential_p50_ms": round(percentile(latencies, 0.5), 2),
        "sequential_p99_ms": round(percentile(latencies, 0.99), 2),
        "burst_flows_per_second": round(burst / burst_seconds, 1),
        "phases_ms": phases(db, calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--burst", type=int, default=200)
    args = parser.parse_args()
    with served_deployment("b4_flows.py:three_tasks", 100, "flowbus-three-") as (url, root):
        figures = asyncio.run(load(url, args.sequential, args.burst, root / "home" / "flowbus.db"))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
