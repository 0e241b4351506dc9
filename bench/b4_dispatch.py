"""B4 dispatch and B5 event fan-out: 1,000 runs of a no-op deployment submitted as fast as
possible to one agent (concurrency 100), on an embedded nats-server, the orchestrator and the
agent as separate processes on this machine, every event recorded in the SQLite store.

Prints one JSON line: completed runs/s; submit -> Running and submit -> Completed latency (p50,
p99; from the submit call to the state's timestamp, one clock); event publication -> arrival at
a subscriber and -> commit in the store (p50); agent idle RSS and orchestrator RSS after the load.

    python bench/b4_dispatch.py [--runs 1000] [--concurrency 100] [--sync default|always]
                                [--in-flight 200] [--orchestrators 1]

With ``--orchestrators N`` that many ``flowbus server start`` serve the same store together
(one leads: the recorder is its own; the others answer submissions and claims).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from scratch import scratch_folder

from flowbus.broker import EmbeddedNatsServer
from flowbus.client import Client
from flowbus.engine.events import FlowRunStateChanged

BENCH = Path(__file__).resolve().parent


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(args: list[str], env: dict[str, str], log: Path, ready: str) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "flowbus", *args], env=env, stdout=out, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while ready not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{args} did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return process


@contextlib.contextmanager
def served_deployment(
    entrypoint: str, concurrency: int, prefix: str, agent_args: tuple[str, ...] = ()
) -> Iterator[tuple[str, Path]]:
    """An embedded nats-server, ``entrypoint`` deployed as ``*/bench``, the orchestrator and one
    agent as separate processes; yields (NATS URL, working folder) and stops them after."""
    root = scratch_folder(prefix)
    env = {**os.environ, "FLOWBUS_HOME": str(root / "home"), "FLOWBUS_LOGGING_LEVEL": "WARNING",
           "PYTHONPATH": str(BENCH)}  # fmt: skip
    env.pop("FLOWBUS_STORE_URL", None)
    with EmbeddedNatsServer(root / "jetstream") as server:
        env["FLOWBUS_NATS_URL"] = server.url
        subprocess.run(
            [sys.executable, "-m", "flowbus", "deploy", entrypoint, "-n", "bench"],
            env=env, cwd=BENCH, check=True, capture_output=True,
        )  # fmt: skip
        orchestrator = start(
            ["server", "start", "--api-port", "-1"],
            env,
            root / "orch.log",
            "orchestrator is serving",
        )
        agent = start(["agent", "start", "-c", str(concurrency), "-n", "bench", *agent_args],
                      env, root / "agent.log", "is serving")  # fmt: skip
        try:
            yield server.url, root
        finally:
            for process in (agent, orchestrator):
                process.terminate()
                process.wait(30)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class CommitWatcher:
    """When each event first shows in the store (a benchmark-side probe of the events table)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.seen: dict[str, float] = {}
        self.position = 0

    def poll(self) -> None:
        if not self.db.exists():
            return
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT position, id FROM events WHERE position > ? ORDER BY position",
                (self.position,),
            ).fetchall()
        now = time.time()
        for position, event_id in rows:
            self.seen.setdefault(event_id, now)
            self.position = position


async def load(url: str, runs: int, db: Path, in_flight: int) -> dict[str, float]:
    submitted: dict[str, float] = {}
    running: dict[str, float] = {}
    completed: dict[str, float] = {}
    arrival_delays: list[float] = []
    event_times: dict[str, float] = {}
    watcher = CommitWatcher(db)
    since = datetime.now(UTC)

    async with Client(url) as client, Client(url) as listener:

        async def follow() -> None:
            async for event in listener.events(since=since):
                now = time.time()
                occurred = event.occurred.timestamp()
                arrival_delays.append(now - occurred)
                event_times[str(event.id)] = occurred
                if isinstance(event, FlowRunStateChanged):
                    run_id = str(event.stream_id)
                    if event.state.name == "Running":
                        running[run_id] = event.state.timestamp.timestamp()
                    elif event.state.name == "Completed":
                        completed[run_id] = event.state.timestamp.timestamp()
                        if len(completed) == runs:
                            return

        async def watch_commits() -> None:
            while len(completed) < runs:
                watcher.poll()
                await asyncio.sleep(0.005)

        follower = asyncio.create_task(follow())
        committer = asyncio.create_task(watch_commits())
        await asyncio.sleep(0.5)  # the subscriptions are in place
        gate = asyncio.Semaphore(in_flight)  # submissions in flight at once

        async def submit_one() -> None:
            async with gate:
                started = time.time()
                run = await client.submit("noop/bench")
                submitted[run.run_id] = started

        first = time.time()
        await asyncio.gather(*(submit_one() for _ in range(runs)))
        submit_seconds = time.time() - first
        await asyncio.wait_for(follower, 120)  # a run that never completes fails the benchmark
        await asyncio.wait_for(committer, 120)
        last_completed = max(completed.values())
        for _ in range(2000):  # until every event is in the store
            watcher.poll()
            if all(e in watcher.seen for e in event_times):
                break
            await asyncio.sleep(0.01)

    to_running = [(running[r] - submitted[r]) * 1000 for r in submitted]
    to_completed = [(completed[r] - submitted[r]) * 1000 for r in submitted]
    commit_delays = [
        (watcher.seen[e] - t) * 1000 for e, t in event_times.items() if e in watcher.seen
    ]
    return {
        "runs": runs,
        "submit_seconds": submit_seconds,
        "completed_per_second": runs / (last_completed - first),
        "to_running_p50_ms": percentile(to_running, 0.5),
        "to_running_p99_ms": percentile(to_running, 0.99),
        "to_completed_p50_ms": percentile(to_completed, 0.5),
        "to_completed_p99_ms": percentile(to_completed, 0.99),
        "event_to_subscriber_p50_ms": statistics.median(arrival_delays) * 1000,
        "event_to_store_p50_ms": statistics.median(commit_delays),
        "events": len(event_times),
        "events_committed": len(commit_delays),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--sync", default="default", choices=["default", "always"])
    parser.add_argument(
        "--in-flight", type=int, default=200, help="submissions awaiting their reply at once"
    )
    parser.add_argument("--orchestrators", type=int, default=1)
    args = parser.parse_args()
    root = scratch_folder("flowbus-b4-")
    print(f"working in {root}", file=sys.stderr)
    env = {
        **os.environ,
        "FLOWBUS_HOME": str(root / "home"),
        "FLOWBUS_LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": str(BENCH),
    }
    env.pop("FLOWBUS_STORE_URL", None)
    with EmbeddedNatsServer(root / "jetstream", sync=args.sync) as server:
        env["FLOWBUS_NATS_URL"] = server.url
        subprocess.run(
            [sys.executable, "-m", "flowbus", "deploy", "b4_flows.py:noop", "-n", "bench"],
            env=env, cwd=BENCH, check=True, capture_output=True,
        )  # fmt: skip
        orchestrators = [
            start(
                ["server", "start", "--api-port", "-1"],
                env,
                root / f"orch-{n}.log",
                "orchestrator is serving",
            )
            for n in range(args.orchestrators)
        ]
        orchestrator = orchestrators[0]  # the leader: it started first
        agent = start(
            ["agent", "start", "-c", str(args.concurrency), "-n", "bench"],
            env, root / "agent.log", "is serving",
        )  # fmt: skip
        try:
            time.sleep(1.0)
            agent_idle = rss_mb(agent.pid)
            db = root / "home" / "flowbus.db"
            result = asyncio.run(load(server.url, args.runs, db, args.in_flight))
            result["in_flight"] = args.in_flight
            result["agent_idle_rss_mb"] = agent_idle
            result["agent_rss_after_mb"] = rss_mb(agent.pid)
            result["orchestrator_rss_after_mb"] = rss_mb(orchestrator.pid)
            result["agent_cpu_s"] = cpu_seconds(agent.pid)
            result["orchestrator_cpu_s"] = sum(cpu_seconds(o.pid) for o in orchestrators)
            result["orchestrators"] = args.orchestrators
            result["nats_cpu_s"] = cpu_seconds(server.pid) if server.pid else 0.0
            result["bench_cpu_s"] = time.process_time()
            result["sync"] = args.sync  # type: ignore[assignment]
        finally:
            for process in (agent, *orchestrators):
                process.terminate()
                process.wait(60)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
