"""B6: completed runs/s with 1, 2 and 4 agents for flows that wait on I/O (a 100 ms sleep).

Each agent runs at most ``--concurrency`` runs at once (10), so one agent completes at most
about 100 runs/s; the figure shows whether adding agents adds throughput (the orchestrator,
the recorder and NATS are shared). An embedded nats-server, one orchestrator and the agents as
separate processes on this machine (agents on several hosts behave alike: they only talk
NATS), SQLite store.

    python bench/b6_agents.py [--runs 600] [--concurrency 10] [--agents 1 2 4]

Prints one JSON line per agent count and a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

from b4_dispatch import BENCH, start
from scratch import scratch_folder

from flowbus.broker import EmbeddedNatsServer
from flowbus.client import Client


async def load(url: str, deployment: str, runs: int) -> float:
    """Submit ``runs`` runs at once; completed runs/s from the first submit to the last end."""
    async with Client(url) as client:
        began = time.perf_counter()
        submitted = await asyncio.gather(*(client.submit(deployment, {}) for _ in range(runs)))
        finals = await asyncio.gather(*(client.wait(s.run_id, timeout=600) for s in submitted))
        elapsed = time.perf_counter() - began
    assert all(final.completed for final in finals)
    return runs / elapsed


def measure(agents: int, runs: int, concurrency: int) -> float:
    root = scratch_folder("flowbus-b6-")
    env = {**os.environ, "FLOWBUS_HOME": str(root / "home"), "FLOWBUS_LOGGING_LEVEL": "WARNING",
           "PYTHONPATH": str(BENCH)}  # fmt: skip
    env.pop("FLOWBUS_STORE_URL", None)
    with EmbeddedNatsServer(root / "jetstream") as server:
        env["FLOWBUS_NATS_URL"] = server.url
        subprocess.run([sys.executable, "-m", "flowbus", "deploy", "b4_flows.py:waits_on_io",
                        "-n", "bench"], env=env, cwd=BENCH, check=True,
                       capture_output=True)  # fmt: skip
        processes = [start(["server", "start", "--api-port", "-1"], env, root / "orch.log",
                           "orchestrator is serving")]  # fmt: skip
        for number in range(agents):
            processes.append(start(["agent", "start", "-c", str(concurrency), "-n",
                                    f"agent-{number}"], env, root / f"agent-{number}.log",
                                   "is serving"))  # fmt: skip
        try:
            asyncio.run(load(server.url, "waits-on-io/bench", runs // 10))  # warm up
            return asyncio.run(load(server.url, "waits-on-io/bench", runs))
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(30)


def main() -> None:
    args = arguments()
    figures = {}
    for agents in args.agents:
        figures[agents] = measure(agents, args.runs, args.concurrency)
        print(json.dumps({"agents": agents, "runs_per_second": round(figures[agents], 1)}))
    print_table("agents", figures)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 2, 4])
    return parser.parse_args()


def print_table(what: str, figures: dict[int, float]) -> None:
    """Completed runs/s per count, and relative to the first count, as a markdown table."""
    base = next(iter(figures.values()))
    print(f"| {what} | completed runs/s | relative to the first |\n|---|---|---|")
    for count, rate in figures.items():
        print(f"| {count} | {rate:,.1f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
