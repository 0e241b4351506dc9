"""Local runs record into the SQLite store under $FLOWBUS_HOME, durably, before returning."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from flowbus import flow, task
from flowbus.engine.errors import StoreError
from flowbus.engine.sinks import StoreSink, use_sink
from flowbus.engine.store import SqliteEventStore


@task
def double(x: int) -> int:
    return 2 * x


@flow
def doubling(n: int) -> int:
    return sum(double.map(range(n)).result()) + double(1)


def count_events(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT type, count(*) FROM events GROUP BY type").fetchall())


def test_every_event_is_on_disk_when_the_flow_call_returns(flowbus_home: Path) -> None:
    assert doubling(50) == 2 * sum(range(50)) + 2
    counts = count_events(flowbus_home / "flowbus.db")
    assert counts == {
        "flow_run.created": 1,
        "flow_run.state": 2,
        "task_run.created": 51,
        "task_run.state": 102,
    }


def test_async_flows_record_too(flowbus_home: Path) -> None:
    @task
    async def ping(i: int) -> int:
        return i

    @flow
    async def pinging() -> int:
        return sum([await f for f in [ping.submit(i) for i in range(20)]])

    assert asyncio.run(pinging()) == sum(range(20))
    assert count_events(flowbus_home / "flowbus.db")["task_run.created"] == 20


def test_store_url_overrides_the_home(
    flowbus_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere.db"
    monkeypatch.setenv("FLOWBUS_STORE_URL", f"sqlite:///{elsewhere}")
    doubling(2)
    assert count_events(elsewhere)["task_run.created"] == 3
    assert not (flowbus_home / "flowbus.db").exists()


def test_runs_from_another_process_are_visible(flowbus_home: Path, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(
        "from flowbus import flow, task\n"
        "@task\ndef one():\n    return 1\n"
        "@flow\ndef job():\n    return one()\n"
        "print(job())\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "1"
    assert count_events(flowbus_home / "flowbus.db")["task_run.state"] == 2


def test_a_store_failure_raises_from_the_flow_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "flowbus.db"
    sink = StoreSink(SqliteEventStore(path, busy_timeout=0.2))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with use_sink(sink), pytest.raises(StoreError, match="locked"):
            doubling(3)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    sink.flush()  # retried now that the lock is gone
    counts = count_events(path)
    assert counts["task_run.created"] == 4
    assert counts["flow_run.state"] == 2
    sink.close()


CACHED_JOB = """
from datetime import timedelta
from flowbus import flow, task, task_input_hash

@task(cache_key_fn=task_input_hash, cache_expiration=timedelta(hours=1))
def expensive(x: int) -> int:
    print("computing", flush=True)
    return x * 10

@flow
def cached_job() -> int:
    return expensive(4)

print("result", cached_job())
"""


def test_a_cache_hit_holds_across_processes(flowbus_home: Path, tmp_path: Path) -> None:
    script = tmp_path / "cached_job.py"
    script.write_text(CACHED_JOB)
    outputs = [
        subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        for _ in range(2)
    ]
    assert outputs[0].split() == ["computing", "result", "40"]
    assert outputs[1].split() == ["result", "40"]  # the second process did not run the task
    with sqlite3.connect(flowbus_home / "flowbus.db") as conn:
        names = [
            row[0] for row in conn.execute("SELECT state_name FROM task_runs ORDER BY created")
        ]
    assert names == ["Completed", "Cached"]
    assert list((flowbus_home / "results").iterdir())
