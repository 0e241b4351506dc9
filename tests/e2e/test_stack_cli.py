"""The whole stack from the command line: ``flowbus up``, deploy, run --watch, cancel, queues,
agents, and ``make demo``'s script, as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import alive

from .conftest import ROOT, Shell
from .test_up import Up


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    stack = Up(tmp_path / "home", "--port", "0")
    try:
        stack.read_until("flowbus is up")
        yield stack
    finally:
        stack.kill()


def test_deploy_run_watch_cancel_queues_and_agents(up: Up, shell: Shell, tmp_path: Path) -> None:
    shell.flowbus("deploy", "examples/etl_pipeline.py:etl_flow", "-n", "daily", "-q", "default")
    out = tmp_path / "iris.csv"
    source = (ROOT / "examples" / "data" / "iris.csv").resolve()
    watched = shell.flowbus(
        "run", "etl-flow/daily", "-p", f"url=file://{source}", "-p", f"filename={out}", "--watch"
    )
    assert re.search(r"Scheduled.*\n.*Pending.*\n.*Running", watched.stdout), watched.stdout
    assert "wrote 150 rows" in watched.stdout and "Completed" in watched.stdout
    assert len(out.read_text().splitlines()) == 151

    failing = shell.flowbus(
        "run", "etl-flow/daily", "-p", "url=file:///nowhere.csv", "-p", f"filename={out}",
        "--watch", check=False,
    )  # fmt: skip
    assert failing.returncode == 1 and "Failed" in failing.stdout
    # The task's traceback once, in its log line; not again under the run's Failed.
    after_failed = failing.stdout.split("  Failed  ")[-1]
    assert "Traceback" not in after_failed and "traceback is above" in after_failed
    failed_id = shell.flowbus_json("runs", "ls", "--state", "failed")["runs"][0]["id"]
    too_late = shell.flowbus("runs", "cancel", failed_id, check=False)
    assert too_late.returncode == 1 and "already ended Failed" in too_late.stderr

    invalid = shell.flowbus("run", "etl-flow/daily", "-p", "url=1", check=False)
    assert invalid.returncode == 2
    assert "filename\n  Field required" in invalid.stderr
    unknown = shell.flowbus("run", "nope/daily", check=False)
    assert unknown.returncode == 2 and "no deployment named 'nope/daily'" in unknown.stderr

    shell.flowbus("queues", "pause", "default")
    queued = json.loads(
        shell.flowbus(
            "run", "etl-flow/daily", "-p", f"url=file://{source}", "-p", f"filename={out}",
            "--json",
        ).stdout
    )  # fmt: skip
    cancelled = shell.flowbus_json("runs", "cancel", queued["run_id"][:13])
    assert cancelled == {"run_id": queued["run_id"], "state": "Cancelled"}
    [queue] = shell.flowbus_json("queues", "ls")
    assert queue["settings"] == {
        "name": "default", "priority": 0, "concurrency_limit": None, "paused": True
    }  # fmt: skip
    shell.flowbus("queues", "resume", "default")
    [agent] = shell.flowbus_json("agents", "ls")
    assert agent["alive"] and agent["queues"] == ["default"] and agent["concurrency"] == 100

    # A prefix, as other commands take it.
    feed = shell.flowbus("events", "--run", queued["run_id"][:13], "--limit", "2", "--json")
    first, second = (json.loads(line) for line in feed.stdout.splitlines())
    assert (first["type"], first["state"]["name"]) == ("flow_run.created", "Scheduled")
    assert second["state"]["name"] == "Cancelled"
    nobody = shell.flowbus("events", "--run", "ffffffff", "--limit", "1", check=False)
    assert nobody.returncode == 1 and "no flow run matches" in nobody.stdout + nobody.stderr

    api = re.search(r"API\s+(http://127\.0\.0\.1:\d+)/api/v1", "\n".join(up.lines))
    assert api is not None, up.lines
    assert any(line.startswith(f"web UI        {api.group(1)}/") for line in up.lines)
    assert all(len(line) <= 80 for line in up.lines if line.startswith(" " * 14)), up.lines
    with urllib.request.urlopen(f"{api.group(1)}/api/v1", timeout=10) as reply:  # what is here
        assert json.load(reply)["web_ui"] == "/ui/"
    with urllib.request.urlopen(f"{api.group(1)}/api/v1/runs?limit=10", timeout=10) as reply:
        runs = json.load(reply)["runs"]
    assert {r["id"] for r in runs} >= {queued["run_id"]}


def test_the_demo_runs_the_stack_and_leaves_nothing(tmp_path: Path) -> None:
    env = {"FLOWBUS_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "examples/demo_stack.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 of 5 runs completed" in done.stdout
    assert done.stdout.count("Completed") >= 5
    pid = re.search(r"nats-server pid (\d+)", done.stdout)
    assert pid is not None and not alive(int(pid.group(1)))
    assert not (tmp_path / "home" / "up.json").exists()
