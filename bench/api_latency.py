"""API response times with a large store: 100,000 runs and 1,000,000 events in SQLite, the API
served by uvicorn on 127.0.0.1, p50/p95 of list and detail endpoints over real HTTP.

    python bench/api_latency.py [--runs 100000] [--requests 200]

The store is built once per invocation (about a minute); each endpoint is then asked
``--requests`` times (detail endpoints for random runs) after a few warm-up calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import sys
import time
from pathlib import Path

import httpx
import uvicorn
from scratch import scratch_folder

from flowbus.api.app import create_app
from flowbus.client import Client
from flowbus.engine.ids import new_id
from flowbus.engine.records import make_record, state_dict
from flowbus.engine.states import Completed, Failed, Pending, Running
from flowbus.engine.store import SqliteEventStore

FLOWS = [f"flow-{i}" for i in range(20)]
DEPLOYMENTS = [f"flow-{i}/daily" for i in range(20)]


def run_events(index: int) -> list:
    """Ten events of one finished run: created, Running, three task runs, a log, its end."""
    run_id, seq = new_id(), 0
    records = []

    def add(kind: str, fields: dict) -> None:
        nonlocal seq
        seq += 1
        records.append(make_record(run_id, seq, kind, fields))

    flow = index % len(FLOWS)
    add("flow_run.created", {
        "flow_name": FLOWS[flow], "name": f"run-{index}", "flow_version": None,
        "parameters": {"n": index}, "tags": ["rare"] if index % 1000 == 0 else ["nightly"],
        "parent_run_id": None, "parent_task_run_id": None, "deployment": DEPLOYMENTS[flow],
        "queue": "default", "idempotency_key": None, "state": state_dict(Pending()),
    })  # fmt: skip
    add("flow_run.state", {"state": state_dict(Running()), "result": None})
    for task in range(3):
        task_run_id = new_id()
        add("task_run.created", {
            "task_run_id": task_run_id, "task_key": "t", "name": f"t-{task}", "tags": [],
            "map_index": None, "cache_key": None, "upstream": [],
            "state": state_dict(Running()),
        })  # fmt: skip
        add("task_run.state", {"task_run_id": task_run_id, "state": state_dict(Completed()),
                               "result": "1"})  # fmt: skip
    add("log", {"task_run_id": None, "level": 20, "logger": "bench", "message": f"line {index}"})
    end = Failed(message="boom") if index % 50 == 0 else Completed()
    add("flow_run.state", {"state": state_dict(end), "result": None})
    return records


async def build(store: SqliteEventStore, runs: int) -> list[str]:
    ids, batch = [], []
    for index in range(runs):
        records = run_events(index)
        ids.append(records[0].stream_id)
        batch += records
        if len(batch) >= 10_000:
            await store.append(batch)
            batch = []
    if batch:
        await store.append(batch)
    return ids


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(base: str, paths: list[str], requests: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for path in paths[:5]:
            (await http.get(path)).raise_for_status()
        times = []
        for i in range(requests):
            path = paths[i % len(paths)]
            start = time.perf_counter()
            response = await http.get(path)
            times.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
    return {"p50_ms": statistics.median(times), "p95_ms": percentile(times, 0.95)}


async def main_async(runs: int, requests: int) -> dict[str, object]:
    folder = scratch_folder("flowbus-api-bench-")
    store = SqliteEventStore(folder / "flowbus.db", synchronous="NORMAL")
    await store.open()
    try:
        return await measure_store(store, folder, runs, requests)
    finally:
        await store.close()


async def measure_store(
    store: SqliteEventStore, folder: Path, runs: int, requests: int
) -> dict[str, object]:
    started = time.perf_counter()
    ids = await build(store, runs)
    build_seconds = time.perf_counter() - started
    events = len(await store.read_all(0, 1)) and runs * 10

    app = create_app(store, Client("nats://127.0.0.1:1"))  # reads only: NATS is not used
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as ApiServer does
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn has no event to wait on
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{port}/api/v1"
    async with httpx.AsyncClient(base_url=base) as http:
        deep = (await http.get("/runs", params={"limit": 500})).json()["next_cursor"]
    sample = random.Random(7).sample(ids, 200)
    cases = {
        "runs, first page": ["/runs?limit=50"],
        "runs, page after 500": [f"/runs?limit=50&cursor={deep}"],
        "runs, state=FAILED": ["/runs?state=FAILED&limit=50"],
        "runs, state=CRASHED (none)": ["/runs?state=CRASHED&limit=50"],
        "runs, state=Late (none)": ["/runs?state=Late&limit=50"],
        "runs, flow=flow-7": ["/runs?flow=flow-7&limit=50"],
        "runs, deployment=flow-3/daily": ["/runs?deployment=flow-3/daily&limit=50"],
        "runs, tag=rare (1 in 1,000)": ["/runs?tag=rare&limit=50"],
        "run detail": [f"/runs/{run_id}" for run_id in sample],
        "dashboard counts, 24 h (all 100k runs in it)": ["/stats/runs?hours=24"],
        "run logs": [f"/runs/{run_id}/logs" for run_id in sample],
    }
    results = {name: await measure(base, paths, requests) for name, paths in cases.items()}
    server.should_exit = True
    await serving
    return {
        "runs": runs,
        "events": events,
        "build_seconds": build_seconds,
        "store_mb": (folder / "flowbus.db").stat().st_size / 1e6,
        "endpoints": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.runs, args.requests))))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
