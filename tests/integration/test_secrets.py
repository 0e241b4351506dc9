"""Blocks and secrets end to end: a secret set with the CLI is loaded by a flow an agent runs,
which logs, prints, returns and raises it; the value is then nowhere to be found: not in the
store file, the nats-server's JetStream files, the daemons' logs, any API response or any
``--json`` output. The agent holds neither the store nor the secret key: the orchestrator
hands the block to the run it granted, records that it did, and only blocks the run's
deployment may load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from flowbus.engine.event_types import EventType
from flowbus.engine.store import EventStore
from tests.integration.stack import Stack

SECRET = "sk-live-7f3a9c2e61b04d58"


def files_containing(root: Path, needle: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            found.append(str(path))
    return found


def keyless_agent(stack: Stack, name: str) -> None:
    """An agent on "another host": a home of its own (no secret key, no store file), no store
    URL, no secret key in its environment."""
    elsewhere = stack.root / f"{name}-home"
    elsewhere.mkdir()
    stack.start_agent(name, env={"FLOWBUS_HOME": str(elsewhere), "FLOWBUS_SECRET_KEY": ""})
    assert not (elsewhere / "secret.key").exists() and not (elsewhere / "flowbus.db").exists()


def block_reads(stack: Stack) -> list[dict[str, Any]]:
    async def read(store: EventStore) -> list[dict[str, Any]]:
        events = await store.read_all(0, limit=100_000)
        return [e.data for e in events if e.type == EventType.BLOCK_READ]

    return stack.with_store(read)


def test_a_secret_never_leaves_its_block(stack: Stack) -> None:
    stack.cli("block", "set", "secret/api-key", f"value={SECRET}")
    stack.cli("variable", "set", "region", "eu-west-1")
    stack.start_orchestrator()
    keyless_agent(stack, "agent-1")
    stack.deploy("uses_secret")

    with_api = stack.api_url + "/api/v1"
    runs = [
        httpx.post(f"{with_api}/deployments/uses-secret/test/runs", json={"parameters": p})
        .json()["run_id"]
        for p in ({}, {"fail": True})
    ]  # fmt: skip
    assert stack.final_states(runs[0])[-1] == "Completed"
    assert stack.final_states(runs[1])[-1] == "Failed"

    # The flow did see the real value (its log line says where it was masked).
    logs = httpx.get(f"{with_api}/runs/{runs[0]}/logs").json()["logs"]
    assert any("calling the API with key ******** in eu-west-1" in line["message"] for line in logs)
    detail = httpx.get(f"{with_api}/runs/{runs[1]}").json()
    assert "the API refused key ********" in (detail["error"] or "")

    # A variable set in the run, with tags (through the orchestrator: the agent has no store).
    variables = {v["name"]: v for v in httpx.get(f"{with_api}/variables").json()}
    assert variables["last-caller"]["tags"] == ["audit"]
    assert variables["region"]["tags"] == []

    # The orchestrator handed the block over, once per run, and recorded it.
    reads = block_reads(stack)
    assert sorted(r["run_id"] for r in reads) == sorted(runs)
    assert {(r["block"], r["agent"], r["attempt"]) for r in reads} == {
        ("secret/api-key", "agent-1", 1)
    }

    # Every API response.
    paths = ["/runs", "/blocks", "/blocks/secret/api-key", "/block-types", "/variables",
             "/deployments", "/stats/runs", "/schedules"]  # fmt: skip
    for run_id in runs:
        paths += [f"/runs/{run_id}", f"/runs/{run_id}/logs", f"/runs/{run_id}/task-runs"]
    for path in paths:
        response = httpx.get(with_api + path)
        assert response.status_code == 200, (path, response.text)
        assert SECRET not in response.text, path
    with httpx.stream("GET", f"{with_api}/events/stream", params={"run_id": runs[0]},
                      timeout=httpx.Timeout(5, read=2)) as stream:  # fmt: skip
        seen = b""
        try:
            for chunk in stream.iter_bytes():
                seen += chunk
        except httpx.ReadTimeout:
            pass
    assert b"calling the API" in seen and SECRET.encode() not in seen

    # Every --json output.
    for args in (["block", "show", "secret/api-key"], ["block", "ls"], ["runs", "ls"],
                 ["runs", "show", runs[0]], ["runs", "logs", runs[0]], ["runs", "show", runs[1]],
                 ["variable", "ls"], ["events", "--run", runs[0], "--limit", "4"]):  # fmt: skip
        out = stack.cli(*args, "--json").stdout
        assert out and SECRET not in out, args
    shown = json.loads(stack.cli("block", "show", "secret/api-key", "--json").stdout)
    assert shown["data"] == {"value": "********"}

    # The files: the SQLite store, JetStream's files, the daemons' logs; the key is 0600.
    for daemon in stack.daemons:
        daemon.stop()
    assert files_containing(stack.root, SECRET.encode()) == []
    assert b"fernet:" in (stack.home / "flowbus.db").read_bytes() or any(
        b"fernet:" in p.read_bytes() for p in stack.home.glob("flowbus.db*")
    )
    assert (stack.home / "secret.key").stat().st_mode & 0o777 == 0o600


def test_another_key_cannot_read_a_secret_and_says_why(stack: Stack, tmp_path: Path) -> None:
    stack.cli("block", "set", "secret/api-key", f"value={SECRET}")
    env = {**stack.env, "FLOWBUS_SECRET_KEY": "x" * 43 + "="}
    code = "from flowbus import Secret; Secret.load('api-key')"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "FLOWBUS_SECRET_KEY" in done.stderr and SECRET not in done.stderr
    assert os.environ.get("FLOWBUS_SECRET_KEY") is None


def test_a_deployment_loads_only_the_blocks_it_lists(stack: Stack) -> None:
    stack.cli("block", "set", "secret/api-key", f"value={SECRET}")
    stack.cli("variable", "set", "region", "eu-west-1")
    stack.start_orchestrator()
    keyless_agent(stack, "agent-1")
    allowed = stack.deploy("uses_secret", "allowed", blocks=["secret/api-*"])
    other = stack.deploy("uses_secret", "other", blocks=["secret/warehouse"])
    with_api = stack.api_url + "/api/v1"
    runs = {
        name: httpx.post(f"{with_api}/deployments/{name}/runs", json={"parameters": {}})
        .json()["run_id"]
        for name in (allowed, other)
    }  # fmt: skip
    assert stack.final_states(runs[allowed])[-1] == "Completed"
    assert stack.final_states(runs[other])[-1] == "Failed"
    detail = httpx.get(f"{with_api}/runs/{runs[other]}").json()
    assert "may not load block secret/api-key" in (detail["error"] or ""), detail
    assert [r["run_id"] for r in block_reads(stack)] == [runs[allowed]]


def test_a_flow_run_on_an_agent_cannot_save_a_block(stack: Stack) -> None:
    stack.start_orchestrator()
    keyless_agent(stack, "agent-1")
    run_id = stack.submit_over_http(stack.deploy("saves_block"))
    assert stack.final_states(run_id)[-1] == "Failed"
    error = httpx.get(f"{stack.api_url}/api/v1/runs/{run_id}").json()["error"] or ""
    assert "cannot save blocks" in error
