"""What loading a secret block costs a flow: on an agent (asked of the orchestrator, which reads
the store, decrypts, records a ``block.read`` event and answers the run's holder) and in a run by
hand (read from the store and decrypted in the flow's own process).

An embedded nats-server, the orchestrator and one agent as separate processes, the SQLite store.
Prints one JSON line: the median and p95 of one ``Secret.load`` in milliseconds, each way.

    python bench/block_load.py [--loads 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys

from b4_dispatch import BENCH, percentile, served_deployment

from flowbus.client import Client


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(statistics.median(ms), 3), "p95_ms": round(percentile(ms, 0.95), 3)}


async def on_the_agent(url: str, loads: int) -> list[float]:
    async with Client(url) as client:
        run = await client.submit("loads-blocks/bench", {"times": loads})
        final = await client.wait(run.run_id, timeout=300)
        assert final.completed, final
        took: list[float] = await client.result(run.run_id)
        return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=300)
    loads = parser.parse_args().loads
    with served_deployment("block_flows.py:loads_blocks", 4, "block-load") as (url, root):
        env = {**os.environ, "FLOWBUS_HOME": str(root / "home"), "FLOWBUS_NATS_URL": url}
        env.pop("FLOWBUS_STORE_URL", None)
        subprocess.run([sys.executable, "-m", "flowbus", "block", "set", "secret/bench-key",
                        "value=sk-bench-0123456789"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        os.environ.update({"FLOWBUS_HOME": env["FLOWBUS_HOME"], "FLOWBUS_NATS_URL": url})
        agent = asyncio.run(on_the_agent(url, loads))
        by_hand = subprocess.run(
            [sys.executable, "-c", "import json, block_flows; "
             f"print(json.dumps(block_flows.loads_blocks({loads})))"],
            env={**env, "PYTHONPATH": str(BENCH), "FLOWBUS_NATS_URL": ""}, check=True,
            capture_output=True, text=True, cwd=BENCH,
        )  # fmt: skip
        local = json.loads(by_hand.stdout.strip().splitlines()[-1])
    print(json.dumps({"loads": loads, "on_an_agent": summary(agent[10:]),
                      "by_hand_from_the_store": summary(local[10:])}))  # fmt: skip


if __name__ == "__main__":
    main()
