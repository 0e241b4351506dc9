"""The commands of the guide Prefect users learn from, with ``prefect`` replaced by ``flowbus``:
``deployment build ... --apply`` (a name with spaces), ``agent start -q "default"`` and
``cloud login``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from .conftest import ROOT, Shell
from .test_stack_cli import up  # noqa: F401 - the fixture
from .test_up import Up


def test_the_guides_commands_work_with_a_name_with_spaces(
    up: Up,  # noqa: F811
    shell: Shell,
    tmp_path: Path,
) -> None:
    # The guide's command as written, from the repository's root: the error names the file.
    guessed = shell.flowbus("deployment", "build", "etl_pipeline.py:etl_flow", "-n", "x",
                            check=False)  # fmt: skip
    assert guessed.returncode != 0
    assert "did you mean examples/etl_pipeline.py:etl_flow?" in " ".join(
        (guessed.stdout + guessed.stderr).split()
    )
    bare = shell.flowbus("cloud", "login", check=False)  # says how to reach a team's server
    assert bare.returncode == 2 and "flowbus login https://" in bare.stdout
    saved = shell.flowbus_json("deployment", "build", "examples/etl_pipeline.py:etl_flow",
                               "-n", "My First Deployment", "-q", "default", "--apply")  # fmt: skip
    assert saved["name"] == "etl-flow/My First Deployment"
    out = tmp_path / "iris.csv"
    source = (ROOT / "examples" / "data" / "iris.csv").resolve()
    watched = shell.flowbus("run", "etl-flow/My First Deployment", "-p", f"url=file://{source}",
                            "-p", f"filename={out}", "--watch")  # fmt: skip
    assert "Completed" in watched.stdout and len(out.read_text().splitlines()) == 151
    shown = shell.flowbus_json("deployments", "show", "etl-flow/My First Deployment")
    assert shown["queue"] == "default"

    api = re.search(r"API\s+(http://127\.0\.0\.1:\d+)/api/v1", "\n".join(up.lines))
    assert api is not None, up.lines
    path = urllib.parse.quote("etl-flow/My First Deployment")
    with urllib.request.urlopen(f"{api.group(1)}/api/v1/deployments/{path}", timeout=10) as reply:
        assert reply.status == 200

    agent = subprocess.Popen(
        [sys.executable, "-m", "flowbus", "agent", "start", "-q", "default", "--name", "guide"],
        env=shell.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert agent.stdout is not None
        deadline = time.monotonic() + 60
        seen = []
        while time.monotonic() < deadline:
            line = agent.stdout.readline()
            seen.append(line)
            if "agent guide is serving default" in line or not line:
                break
        assert any("agent guide is serving default" in line for line in seen), seen
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=60) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()

    # With the team server's URL, `cloud login` logs in as `flowbus login` does.
    assert api is not None
    login = shell.flowbus("cloud", "login", api.group(1))
    assert "logged in to" in login.stdout
    shell.flowbus("profile", "rm", "127.0.0.1", check=False)


def test_flow_serve_with_no_server_starts_one_and_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect's quickest deploy on a machine with nothing running: ``flow.serve()`` brings the
    local stack up around its agent, runs what is submitted, and takes it all down on Ctrl-C."""
    from flowbus.deployments import run_deployment
    from tests.integration.stack import FLOWS_DIR
    from tests.processes import alive

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env.update(FLOWBUS_HOME=str(home), PYTHONPATH=str(FLOWS_DIR), NO_COLOR="1")
    code = "from flows import quick; quick.serve(name='mine')"
    serving = subprocess.Popen(
        [sys.executable, "-c", code], cwd=FLOWS_DIR, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert serving.stdout is not None
        seen = []
        for line in serving.stdout:
            seen.append(line)
            if "flowbus is up here" in line:
                break
        assert any("flowbus is up here" in line for line in seen), seen
        info = json.loads((home / "up.json").read_text())
        monkeypatch.delenv("FLOWBUS_NATS_URL", raising=False)
        monkeypatch.setenv("FLOWBUS_HOME", str(home))
        run = run_deployment("quick/mine", parameters={"n": 2}, timeout=60)
        assert run.state is not None and run.state.is_completed()
        serving.send_signal(signal.SIGINT)
        assert serving.wait(timeout=90) == 0
        assert not alive(int(info["nats_pid"])) and not (home / "up.json").exists()
    finally:
        if serving.poll() is None:
            serving.kill()
            serving.wait()
