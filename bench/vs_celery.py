"""A service's submit -> result, flowbus against Celery, interleaved in one sitting.

flowbus: ``flowbus up`` as a new user starts it (embedded nats-server, SQLite store, the
orchestrator and one agent in one process, its default concurrency), the three-task flow of
bench/b4_flows.py deployed, submitted and awaited with ``Client.submit`` + ``Client.wait``.
Celery 5: the same three steps as three chained tasks (``--celery-shape chain``, the default:
a task each, as the flow's) or as one task doing all three (``one-task``, Celery's fastest case),
bench/celery_peer.py; a prefork worker with one process per core, Redis as broker and result
backend, ``apply_async`` + ``get``.

Each round runs flowbus and Celery in turn (ABBA over rounds), each one: ``--sequential`` calls
one at a time, then ``--burst`` at once. Prints one JSON line per system and round, then the
medians over rounds and the ratios the issue sets targets for.

    python bench/vs_celery.py [--rounds 2] [--sequential 200] [--burst 200] [--flowbus-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from b4_dispatch import BENCH, percentile
from run_phases import phases
from scratch import scratch_folder


def summary(latencies: list[float], burst: int, burst_seconds: float) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p95_ms": round(percentile(latencies, 0.95), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
        "burst_flows_per_second": round(burst / burst_seconds, 1),
    }


def stop(process: subprocess.Popen[bytes], sig: int) -> None:
    """Stop a daemon the way its user would (``sig``), killing it if it does not end."""
    process.send_signal(sig)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


# --- flowbus ---------------------------------------------------------------------------------


@contextmanager
def flowbus_up() -> Iterator[tuple[str, Path]]:
    """``flowbus up`` (defaults) in a scratch home, the flow deployed; yields its NATS URL and
    its store's file."""
    root = scratch_folder("vs-celery-flowbus-")
    env = {**os.environ, "FLOWBUS_HOME": str(root / "home"), "FLOWBUS_LOGGING_LEVEL": "WARNING",
           "PYTHONPATH": str(BENCH)}  # fmt: skip
    for name in ("FLOWBUS_STORE_URL", "FLOWBUS_NATS_URL", "FLOWBUS_NATS_CREDS"):
        env.pop(name, None)
    log = (root / "up.log").open("w")
    command = [sys.executable, "-m", "flowbus", "up", "--api-port", "0"]
    process = subprocess.Popen(command, env=env, cwd=BENCH, stdout=log, stderr=subprocess.STDOUT)
    try:
        found = root / "home" / "up.json"
        deadline = time.monotonic() + 60
        while not (found.exists() and "flowbus is up" in (root / "up.log").read_text()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("flowbus up did not start: " + (root / "up.log").read_text())
            time.sleep(0.1)
        url = json.loads(found.read_text())["nats_url"]
        subprocess.run([sys.executable, "-m", "flowbus", "deploy", "b4_flows.py:three_tasks",
                        "-n", "bench"], env={**env, "FLOWBUS_NATS_URL": url}, cwd=BENCH,
                       check=True, capture_output=True)  # fmt: skip
        yield url, root / "home" / "flowbus.db"
    finally:
        stop(process, signal.SIGINT)
        log.close()


async def flowbus_round(url: str, db: Path, sequential: int, burst: int) -> dict[str, Any]:
    """The calls' figures, and where a sequential call's time goes (``run_phases``)."""
    from flowbus.client import Client

    async with Client(url) as client:
        for _ in range(10):  # warm up: the flow's module loaded, connections made
            run = await client.submit("three-tasks/bench", {"x": 1})
            await client.wait(run.run_id, 60)
        latencies = []
        calls: dict[str, tuple[float, float]] = {}
        for _ in range(sequential):
            began, wall = time.perf_counter(), time.time()
            run = await client.submit("three-tasks/bench", {"x": 1})
            final = await client.wait(run.run_id, 60)
            latencies.append((time.perf_counter() - began) * 1000)
            calls[run.run_id] = (wall, wall + latencies[-1] / 1000)
            assert final.result == "4", final
        started = time.perf_counter()
        runs = await asyncio.gather(*(client.submit("three-tasks/bench") for _ in range(burst)))
        finals = await asyncio.gather(*(client.wait(run.run_id, 300) for run in runs))
        burst_seconds = time.perf_counter() - started
        assert all(f.completed for f in finals)
    return {**summary(latencies, burst, burst_seconds), "phases_ms": phases(db, calls)}


# --- Celery ----------------------------------------------------------------------------------


@contextmanager
def celery_worker() -> Iterator[None]:
    """A prefork worker (one process per core) of bench/celery_peer.py, Redis database 13."""
    import redis
    from celery_peer import REDIS

    redis.Redis.from_url(REDIS).flushdb()
    root = scratch_folder("vs-celery-celery-")
    log = (root / "worker.log").open("w")
    celery = Path(sys.executable).parent / "celery"
    process = subprocess.Popen(
        [str(celery), "-A", "celery_peer", "worker", "--pool", "prefork",
         "--concurrency", str(os.cpu_count() or 2), "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=BENCH, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(BENCH)},
    )  # fmt: skip
    try:
        from celery_peer import three_tasks

        deadline = time.monotonic() + 60
        while True:  # until the worker answers
            try:
                three_tasks.apply_async((1,)).get(timeout=2)
                break
            except Exception as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = (root / "worker.log").read_text()
                    raise RuntimeError(f"no celery worker: {output}") from exc
        yield
    finally:
        stop(process, signal.SIGTERM)
        log.close()


def celery_round(sequential: int, burst: int, shape: str) -> dict[str, float]:
    """``chain``: three tasks chained (a task each, as the flow's: the shape to compare);
    ``one-task``: one task doing the three steps itself (Celery's fastest case)."""
    from celery import chain
    from celery_peer import step_task, three_tasks

    def call(x: int) -> Any:
        if shape == "chain":
            return chain(step_task.s(x), step_task.s(), step_task.s()).apply_async()
        return three_tasks.apply_async((x,))

    for _ in range(10):
        call(1).get(timeout=30)
    latencies = []
    for _ in range(sequential):
        began = time.perf_counter()
        assert call(1).get(timeout=30) == 4
        latencies.append((time.perf_counter() - began) * 1000)
    started = time.perf_counter()
    pending = [call(0) for _ in range(burst)]
    assert all(result.get(timeout=120) == 3 for result in pending)
    return summary(latencies, burst, time.perf_counter() - started)


# --- the sitting -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--celery-shape", choices=["chain", "one-task"], default="chain")
    parser.add_argument(
        "--flowbus-only",
        action="store_true",
        help="flowbus's rounds alone (to compare two commits of flowbus)",
    )
    args = parser.parse_args()
    if args.flowbus_only:
        for number in range(args.rounds):
            with flowbus_up() as (url, db):
                figures = asyncio.run(flowbus_round(url, db, args.sequential, args.burst))
            print(json.dumps({"round": number, "system": "flowbus", **figures}), flush=True)
        return
    results: dict[str, list[dict[str, float]]] = {"flowbus": [], "celery": []}
    for number in range(args.rounds):
        order = ["flowbus", "celery"] if number % 2 == 0 else ["celery", "flowbus"]
        for system in order:
            if system == "flowbus":
                with flowbus_up() as (url, db):
                    figures = asyncio.run(flowbus_round(url, db, args.sequential, args.burst))
            else:
                with celery_worker():
                    figures = celery_round(args.sequential, args.burst, args.celery_shape)
            results[system].append(figures)
            print(json.dumps({"round": number, "system": system, **figures}), flush=True)
    medians: dict[str, dict[str, Any]] = {
        system: {
            key: round(statistics.median(r[key] for r in rounds), 2)
            for key in rounds[0]
            if key != "phases_ms"
        }
        for system, rounds in results.items()
    }
    f, c = medians["flowbus"], medians["celery"]
    ratios = {
        "p50_vs_celery": round(f["p50_ms"] / c["p50_ms"], 2),  # target: at most 0.5
        "p99_vs_own_p50": round(f["p99_ms"] / f["p50_ms"], 2),  # target: at most 3
        "burst_vs_celery": round(f["burst_flows_per_second"] / c["burst_flows_per_second"], 2),
    }  # target burst: at least 2
    print(json.dumps({"medians": medians, "ratios": ratios}))


if __name__ == "__main__":
    main()
