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
import sqlite3
import statistics
import time
from datetime import datetime
from pathlib import Path

from b4_dispatch import percentile, served_deployment

from flowbus.client import Client


def phases(db: Path, calls: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Median milliseconds of each step of a call, from the states' own timestamps."""
    gaps: dict[str, list[float]] = {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        for run_id, (submitted, returned) in calls.items():
            rows = conn.execute(
                "SELECT body FROM events WHERE stream_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
            states: dict[str, float] = {}
            for (body,) in rows:
                event = json.loads(body)
                if event["type"].startswith("flow_run") and "state" in event:
                    stamp = datetime.fromisoformat(event["state"]["timestamp"]).timestamp()
                    states.setdefault(event["state"]["name"], stamp)
            marks = [
                ("submit -> Scheduled recorded", submitted, states["Scheduled"]),
                ("Scheduled -> Pending (queue, fetch, claim)", states["Scheduled"],
                 states["Pending"]),
                ("Pending -> Running (flow started)", states["Pending"], states["Running"]),
                ("Running -> Completed (3 tasks)", states["Running"], states["Completed"]),
                ("Completed -> wait returned", states["Completed"], returned),
            ]  # fmt: skip
            for name, begin, end in marks:
                gaps.setdefault(name, []).append((end - begin) * 1000)
    return {name: round(statistics.median(values), 2) for name, values in gaps.items()}


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
