"""Concurrency limits in flows run by hand, when a profile names a server (``FLOWBUS_API_URL``):
a tag's limit and a global limit bind across separate processes as they do across agents, and
a script killed -9 while it holds a slot loses it after the lease, so the next one gets it."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.stack import Stack, wait_until

SCRIPT = """
import sys, time
from flowbus import flow, task
from flowbus.concurrency.sync import concurrency

log, kind, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])

def mark(what):
    with open(log, "a") as out:  # O_APPEND: whole lines from every process
        out.write(f"{what} {time.time()}\\n")

@task(tags=["warehouse"])
def load(i: int) -> None:
    mark("start"); time.sleep(seconds); mark("end")

@flow
def tagged(n: int = 2) -> None:
    for i in range(n):
        load(i)

@flow
def guarded() -> None:
    with concurrency("db", occupy=1, timeout_seconds=120):
        mark("start"); time.sleep(seconds); mark("end")

tagged() if kind == "tagged" else guarded()
"""


def by_hand(stack: Stack, tmp_path: Path, log: Path, kind: str, seconds: float,
            name: str) -> subprocess.Popen[str]:  # fmt: skip
    """A script that runs a flow by hand, its runs reported to the stack's server."""
    script = tmp_path / "by_hand.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "FLOWBUS_HOME": str(tmp_path / f"home-{name}"),
           "FLOWBUS_API_URL": stack.api_url, "FLOWBUS_HEARTBEAT_SECONDS": "0.3"}  # fmt: skip
    for unset in ("FLOWBUS_NATS_URL", "FLOWBUS_STORE_URL", "FLOWBUS_API_TOKEN"):
        env.pop(unset, None)
    return subprocess.Popen([sys.executable, str(script), str(log), kind, str(seconds)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def intervals(log: Path) -> list[tuple[float, float]]:
    """(start, end) of each guarded piece of work, in the order they started."""
    lines = [line.split() for line in log.read_text().splitlines()]
    starts = sorted(float(t) for what, t in lines if what == "start")
    ends = sorted(float(t) for what, t in lines if what == "end")
    return list(zip(starts, ends, strict=False))


def overlapping(spans: list[tuple[float, float]]) -> bool:
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def finished(process: subprocess.Popen[str]) -> str:
    out, _ = process.communicate(timeout=180)
    assert process.returncode == 0, out
    return out


#: A process silent this long loses its slots: long enough that a busy machine's stalls never
#: take a slot from a live script (which renews every 0.3 s here).
LEASE = {"FLOWBUS_LEASE_SECONDS": "8"}


def test_a_tag_limit_and_a_global_limit_bind_across_processes_by_hand(
    stack: Stack, tmp_path: Path
) -> None:
    stack.env.update(LEASE)
    stack.start_orchestrator()
    stack.cli("limit", "set", "warehouse", "1")
    stack.cli("gcl", "create", "db", "--limit", "1")

    tagged = tmp_path / "tagged.log"
    scripts = [by_hand(stack, tmp_path, tagged, "tagged", 0.4, f"t{i}") for i in range(3)]
    for script in scripts:
        finished(script)
    spans = intervals(tagged)
    assert len(spans) == 6 and not overlapping(spans), spans  # 3 processes x 2 tasks, one at a time

    guarded = tmp_path / "guarded.log"
    scripts = [by_hand(stack, tmp_path, guarded, "guarded", 0.4, f"g{i}") for i in range(3)]
    for script in scripts:
        finished(script)
    spans = intervals(guarded)
    assert len(spans) == 3 and not overlapping(spans), spans


def test_a_killed_scripts_slot_comes_back_after_the_lease(stack: Stack, tmp_path: Path) -> None:
    stack.env.update(LEASE)
    stack.start_orchestrator()
    stack.cli("gcl", "create", "db", "--limit", "1")
    log = tmp_path / "killed.log"
    holder = by_hand(stack, tmp_path, log, "guarded", 600, "holder")
    try:
        wait_until(lambda: log.exists() and "start" in log.read_text(), 60, "the slot taken")
        waiter = by_hand(stack, tmp_path, log, "guarded", 0.1, "waiter")
        time.sleep(1)  # the waiter asks while the slot is held
        assert waiter.poll() is None and log.read_text().count("start") == 1
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        finished(waiter)  # after the lease (8 s here) and a sweep
        assert log.read_text().count("start") == 2
        limits = stack.cli("limit", "ls", "--json").stdout
        assert "hand:" not in limits  # nothing held by hand any more
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
