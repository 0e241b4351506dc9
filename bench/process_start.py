"""How long a process-isolated run takes to start: runs of a no-op deployment submitted one
after another to an agent with ``--isolation process``; an embedded nats-server, the
orchestrator and the agent as separate processes, every event recorded in the SQLite store.

Prints one JSON line: from the claim (Pending, recorded by the orchestrator) to Running
(published by the run's own process once its flow starts), and submit -> Completed, p50/p99.

    python bench/process_start.py [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import time
from datetime import datetime
from pathlib import Path

from b4_dispatch import percentile, served_deployment

from flowbus.client import Client


def pending_to_running(db: Path, run_ids: list[str]) -> list[float]:
    gaps = []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        for run_id in run_ids:
            stamps: dict[str, float] = {}
            for (body,) in conn.execute(
                "SELECT body FROM events WHERE stream_id = ? AND type = 'flow_run.state'",
                (run_id,),
            ):
                state = json.loads(body)["state"]
                stamps[state["name"]] = datetime.fromisoformat(state["timestamp"]).timestamp()
            gaps.append((stamps["Running"] - stamps["Pending"]) * 1000)
    return gaps


async def load(url: str, runs: int) -> tuple[list[str], list[float]]:
    ids, totals = [], []
    async with Client(url) as client:
        for _ in range(runs):
            started = time.perf_counter()
            run = await client.submit("noop/bench")
            final = await client.wait(run.run_id, timeout=120)
            assert final.completed, final
            totals.append((time.perf_counter() - started) * 1000)
            ids.append(run.run_id)
    return ids, totals


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    served = served_deployment("b4_flows.py:noop", 4, "flowbus-pstart-", ("--isolation", "process"))
    with served as (url, root):
        ids, totals = asyncio.run(load(url, args.runs))
        db = root / "home" / "flowbus.db"
        deadline = time.monotonic() + 60
        while True:  # the store may trail the waiter by a commit
            try:
                gaps = pending_to_running(db, ids)
                break
            except KeyError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    print(json.dumps({
        "runs": args.runs,
        "claim_to_running_p50_ms": round(percentile(gaps, 0.5), 1),
        "claim_to_running_p99_ms": round(percentile(gaps, 0.99), 1),
        "submit_to_completed_p50_ms": round(percentile(totals, 0.5), 1),
        "submit_to_completed_p99_ms": round(percentile(totals, 0.99), 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
