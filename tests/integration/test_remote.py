"""A team's server reached remotely: `flowbus login`, then the CLI and `flowbus.Client` go
through the server's HTTP API from a "laptop" that has neither the store nor NATS."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from flowbus.client import Client, ClientError

from .stack import FLOWS_DIR, Stack, wait_until
from .test_automations import RAW_TO_ETL

TOKEN = "team-token"


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    server = Stack(tmp_path / "server", env={"FLOWBUS_API_TOKEN": TOKEN})
    server.start_orchestrator()
    server.start_agent("agent-1")
    yield server  # type: ignore[misc]
    server.close()


def laptop(tmp_path: Path) -> dict[str, str]:
    """A machine with no store and no NATS: a home of its own, NATS pointed at nothing."""
    home = tmp_path / "laptop"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    return {**env, "FLOWBUS_HOME": str(home), "FLOWBUS_NATS_URL": "nats://127.0.0.1:1",
            "NO_COLOR": "1", "COLUMNS": "200"}  # fmt: skip


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "flowbus", *args], env=env, cwd=FLOWS_DIR,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"flowbus {' '.join(args)}: {done.stdout}{done.stderr}")
    return done


def test_the_cli_works_through_the_api_with_a_profile(stack: Stack, tmp_path: Path) -> None:
    env = laptop(tmp_path)
    quick = stack.deploy("quick")
    refused = cli(env, "login", stack.api_url, "--token", "wrong", check=False)
    assert refused.returncode != 0 and "refused the token" in refused.stderr
    cli(env, "login", stack.api_url, "--token", TOKEN, "--name", "team")
    saved = Path(env["FLOWBUS_HOME"]) / "profiles.toml"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    listed = json.loads(cli(env, "profile", "ls", "--json").stdout)
    profile = {"name": "team", "url": stack.api_url, "token": True}
    assert listed == {"current": "team", "profiles": [profile]}

    submitted = json.loads(cli(env, "run", quick, "-p", "n=3", "--watch", "--json").stdout)
    run_id = submitted["run_id"]
    assert submitted["state"] == "Completed"
    [listed_run] = json.loads(cli(env, "runs", "ls", "--json").stdout)["runs"]
    assert listed_run["id"] == run_id
    shown = json.loads(cli(env, "runs", "show", run_id[:8], "--json").stdout)
    assert shown["result"] == 6 and len(shown["task_runs"]) == 3
    assert "adding 3 doubles" in cli(env, "runs", "logs", run_id).stdout
    assert json.loads(cli(env, "runs", "result", run_id).stdout) == 6
    deployments = json.loads(cli(env, "deployments", "ls", "--json").stdout)["deployments"]
    assert [d["name"] for d in deployments] == [quick]
    queues = json.loads(cli(env, "queues", "ls", "--json").stdout)
    assert [q["settings"]["name"] for q in queues] == ["default"]
    agents = json.loads(cli(env, "agents", "ls", "--json").stdout)
    assert [a["name"] for a in agents] == ["agent-1"]

    # Deploying from the laptop: the flow is loaded and checked here, recorded on the server.
    deployed = json.loads(cli(env, "deploy", "flows.py:quick", "-n", "remote", "-p", "n=2",
                              "--json").stdout)  # fmt: skip
    assert deployed["name"] == "quick/remote" and deployed["parameters"] == {"n": 2}
    shown = httpx.get(f"{stack.api_url}/api/v1/deployments/quick/remote",
                      headers={"Authorization": f"Bearer {TOKEN}"}).json()  # fmt: skip
    assert shown["entrypoint_hash"] is not None
    remote = json.loads(cli(env, "run", "quick/remote", "--watch", "--json").stdout)
    assert remote["state"] == "Completed"

    failing = stack.deploy("fails")
    failed = json.loads(cli(env, "run", failing, "--watch", "--json", check=False).stdout)
    assert failed["state"] == "Failed"
    retried = json.loads(cli(env, "runs", "retry", failed["run_id"], "--json").stdout)
    assert retried["state"] == "AwaitingRetry"
    refusal = cli(env, "run", quick, "-p", "n=lots", check=False)
    assert refusal.returncode == 2 and "n" in refusal.stderr
    # Nothing was made locally: the laptop has no store.
    assert not (Path(env["FLOWBUS_HOME"]) / "flowbus.db").exists()

    cli(env, "profile", "rm", "team")
    local = cli(env, "runs", "ls", "--json", check=False)  # no profile: the local store again
    assert json.loads(local.stdout)["runs"] == []


async def test_the_client_over_http(stack: Stack, tmp_path: Path) -> None:
    quick = stack.deploy("quick")
    async with Client(api_url=stack.api_url, api_token=TOKEN) as client:
        run = await client.submit(quick, {"n": 4})
        final = await client.wait(run.run_id, timeout=60)
        assert final.completed and final.result == "12"
        assert await client.result(run.run_id) == 12
        assert [q.settings.name for q in await client.queues()] == ["default"]
        with pytest.raises(ClientError) as unknown:
            await client.submit("nope/nothing", {})
        assert unknown.value.code == "unknown_deployment"
    async with Client(api_url=stack.api_url, api_token="wrong") as client:
        with pytest.raises(ClientError) as refused:
            await client.submit(quick, {})
        assert refused.value.code == "unauthorized"
    wait_until(lambda: stack.states(run.run_id)[-1:] == ["Completed"], what="the store")


async def test_the_api_over_https_with_a_ca_the_test_made(tmp_path: Path) -> None:
    from tests.cluster.tls import TestCA

    authority = TestCA(tmp_path / "tls")
    cert, key = authority.issue("api", ["127.0.0.1"])
    tls = {"FLOWBUS_API_TLS_CERT": str(cert), "FLOWBUS_API_TLS_KEY": str(key)}
    server = Stack(tmp_path / "server", env={"FLOWBUS_API_TOKEN": TOKEN, **tls})
    try:
        server.start_orchestrator()
        server.start_agent("agent-1")
        quick = server.deploy("quick")
        url = server.api_url
        assert url.startswith("https://")
        env = {**laptop(tmp_path), "FLOWBUS_API_URL": url, "FLOWBUS_API_TOKEN": TOKEN}
        unverified = cli(env, "runs", "ls", check=False)  # the system's CAs do not know it
        assert unverified.returncode != 0 and "certificate" in unverified.stderr.lower()
        env["FLOWBUS_API_TLS_CA"] = str(authority.ca)
        submitted = json.loads(cli(env, "run", quick, "-p", "n=2", "--watch", "--json").stdout)
        assert submitted["state"] == "Completed"
    finally:
        server.close()


def test_configuration_and_events_through_the_api(stack: Stack, tmp_path: Path) -> None:
    """Variables, blocks (their secrets encrypted by the server, with its key), tag and global
    limits, automations, custom events and run statistics, from a laptop with a profile."""
    env = laptop(tmp_path)
    cli(env, "login", stack.api_url, "--token", TOKEN)
    quick = stack.deploy("quick")

    cli(env, "variable", "set", "batch", '{"size": 3}')
    assert json.loads(cli(env, "variable", "get", "batch", "--json").stdout)["value"] == {"size": 3}
    cli(env, "block", "set", "secret/db", "value=hunter2")
    shown = json.loads(cli(env, "block", "show", "secret/db", "--json").stdout)
    assert "hunter2" not in json.dumps(shown)
    stored = stack.with_store(lambda s: s.get_document("block", "secret/db"))
    assert stored is not None and "hunter2" not in json.dumps(stored.body)  # encrypted there
    assert not (Path(env["FLOWBUS_HOME"]) / "secret.key").exists()  # no key on the laptop
    bad = cli(env, "block", "set", "secret/db", "nothing=1", check=False)
    assert bad.returncode != 0 and "value" in bad.stderr

    cli(env, "limit", "set", "database", "2")
    limits = json.loads(cli(env, "limit", "ls", "--json").stdout)
    assert [(row["tag"], row["limit"]) for row in limits["limits"]] == [("database", 2)]
    cli(env, "gcl", "create", "api", "--limit", "5")
    assert json.loads(cli(env, "gcl", "inspect", "api", "--json").stdout)["limit"] == 5

    (tmp_path / "raw.yaml").write_text(RAW_TO_ETL)
    cli(env, "automation", "create", str(tmp_path / "raw.yaml"))
    assert cli(env, "automation", "ls").stdout.count("raw-file-to-quick") == 1
    emitted = cli(env, "events", "emit", "file.uploaded", "-l", "bucket=raw",
                  "--payload", '{"rows": 4}', "--json").stdout  # fmt: skip
    assert json.loads(emitted)["type"] == "file.uploaded"
    wait_until(lambda: len(stack.with_store(lambda s: s.list_flow_runs(deployment=quick))) == 1,
               what="the automation's run")  # fmt: skip
    stats = json.loads(cli(env, "runs", "stats", "--json").stdout)
    assert sum(stats["totals"].values()) >= 1

    cli(env, "automation", "rm", "raw-file-to-quick")
    cli(env, "limit", "rm", "database")
    cli(env, "gcl", "delete", "api")
    cli(env, "variable", "rm", "batch")
    cli(env, "block", "rm", "secret/db")
    for kind in ("automation", "limit", "global-limit", "variable", "block"):
        assert stack.with_store(lambda s, kind=kind: s.list_documents(kind)) == []
    assert not (Path(env["FLOWBUS_HOME"]) / "flowbus.db").exists()
