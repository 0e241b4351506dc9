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
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from b4_dispatch import BENCH, percentile, start

from flowbus.broker import EmbeddedNatsServer
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
    root = Path(tempfile.mkdtemp(prefix="flowbus-wait-"))
    env = {**os.environ, "FLOWBUS_HOME": str(root / "home"), "FLOWBUS_LOGGING_LEVEL": "WARNING",
           "PYTHONPATH": str(BENCH)}  # fmt: skip
    env.pop("FLOWBUS_STORE_URL", None)
    with EmbeddedNatsServer(root / "jetstream") as server:
        env["FLOWBUS_NATS_URL"] = server.url
        subprocess.run(
            [sys.executable, "-m", "flowbus", "deploy", "b4_flows.py:noop", "-n", "bench"],
            env=env, cwd=BENCH, check=True, capture_output=True,
        )  # fmt: skip
        orchestrator = start(["server", "start", "--api-port", "-1"], env, root / "orch.log",
                             "orchestrator is serving")  # fmt: skip
        agent = start(["agent", "start", "-c", str(args.concurrency), "-n", "bench"], env,
                      root / "agent.log", "is serving")  # fmt: skip
        try:
            figures = asyncio.run(load(server.url, args.runs))
        finally:
            for process in (agent, orchestrator):
                process.terminate()
                process.wait(30)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
