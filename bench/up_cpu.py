"""What one run costs ``flowbus up`` in CPU: the serving process's and its nats-server's
processor time per run (from /proc, Linux), for three-task runs called one at a time and in
bursts of 200 at once, with the wall-clock rate of each.

CPU per run moves less with the machine's mood than latency does (a 2-core virtual machine
here gives the same commit a third more or less latency from hour to hour): compare two
commits by running this from each one's checkout in turn.

    python bench/up_cpu.py [--sequential 1500] [--bursts 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from b4_dispatch import cpu_seconds
from vs_celery import flowbus_up


def _children(pid: int) -> dict[int, str]:
    """The direct children of ``pid``: their names by process id."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        if int(rest.split()[1]) == pid:
            found[int(entry.name)] = name
    return found


def serving_process() -> int:
    """The process id of the ``flowbus up`` this process started (``vs_celery.flowbus_up``)."""
    return next(pid for pid, name in _children(os.getpid()).items() if "python" in name)


async def _measured(
    processes: dict[int, str], runs: int, work: Callable[[], Awaitable[None]]
) -> dict[str, float]:
    before = {pid: cpu_seconds(pid) for pid in processes}
    started = time.perf_counter()
    await work()
    seconds = time.perf_counter() - started
    figures = {"runs_per_second": round(runs / seconds, 1)}
    for pid, name in processes.items():
        label = "nats_server" if "nats" in name else "flowbus_up"
        figures[f"{label}_cpu_ms_per_run"] = round((cpu_seconds(pid) - before[pid]) / runs * 1e3, 3)
    return figures


async def measure(url: str, sequential: int, bursts: int) -> dict[str, dict[str, float]]:
    from flowbus.client import Client

    async with Client(url) as client:

        async def call() -> None:
            run = await client.submit("three-tasks/bench", {"x": 1})
            await client.wait(run.run_id, 60)

        async def one_at_a_time() -> None:
            for _ in range(sequential):
                await call()

        async def in_bursts() -> None:
            for _ in range(bursts):
                runs = await asyncio.gather(
                    *(client.submit("three-tasks/bench") for _ in range(200))
                )
                finals = await asyncio.gather(*(client.wait(r.run_id, 300) for r in runs))
                assert all(final.completed for final in finals)

        for _ in range(20):  # warm up: the flow's module loaded, connections made
            await call()
        up = serving_process()
        processes = {up: "flowbus up", **_children(up)}
        return {
            "sequential": await _measured(processes, sequential, one_at_a_time),
            "burst_200": await _measured(processes, bursts * 200, in_bursts),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=1500)
    parser.add_argument("--bursts", type=int, default=10)
    args = parser.parse_args()
    with flowbus_up() as (url, _):
        print(json.dumps(asyncio.run(measure(url, args.sequential, args.bursts))))


if __name__ == "__main__":
    main()
