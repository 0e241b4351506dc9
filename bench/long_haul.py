"""``flowbus up`` after many runs: what a service sees once the orchestrator has been busy a
while. The leader keeps each finished run for ten minutes, so after a sustained load it holds
tens of thousands of them; a periodic pass over all of them shows as a stall in the calls that
coincide with it, and as processor time per run.

First ``--runs`` three-task runs in bursts of 200 (submitted and awaited), then ``--sequential``
calls one at a time: their p50, p99 and slowest, the serving process's CPU per call, and its
resident memory after the runs (``VmRSS``, Linux).

    python bench/long_haul.py [--runs 20000] [--sequential 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from b4_dispatch import cpu_seconds, percentile
from up_cpu import serving_process
from vs_celery import flowbus_up


async def load(url: str, runs: int, sequential: int, serving: int) -> dict[str, float]:
    from flowbus.client import Client

    async with Client(url) as client:
        started = time.perf_counter()
        for _ in range(runs // 200):
            burst = await asyncio.gather(*(client.submit("three-tasks/bench") for _ in range(200)))
            await asyncio.gather(*(client.wait(run.run_id, 300) for run in burst))
        filled = time.perf_counter() - started
        cpu = cpu_seconds(serving)
        latencies = []
        for _ in range(sequential):
            began = time.perf_counter()
            run = await client.submit("three-tasks/bench", {"x": 1})
            final = await client.wait(run.run_id, 60)
            latencies.append((time.perf_counter() - began) * 1000)
            assert final.result == "4", final
        cpu = cpu_seconds(serving) - cpu
    return {
        "serving_rss_mb": resident_mb(serving),
        "runs_before": runs,
        "runs_per_second_filling": round(runs // 200 * 200 / filled, 1),
        "sequential_p50_ms": round(percentile(latencies, 0.5), 2),
        "sequential_p99_ms": round(percentile(latencies, 0.99), 2),
        "sequential_max_ms": round(max(latencies), 2),
        "serving_cpu_ms_per_call": round(cpu / sequential * 1000, 3),
    }


def resident_mb(pid: int) -> float:
    """The resident memory of process ``pid``, in MB (from /proc)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return round(int(line.split()[1]) / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--sequential", type=int, default=1_000)
    args = parser.parse_args()
    with flowbus_up() as (url, _):
        figures = asyncio.run(load(url, args.runs, args.sequential, serving_process()))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
