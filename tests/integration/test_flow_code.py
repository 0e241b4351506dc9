"""The code on disk is the code that runs: an agent picks up a flow file edited (and a module
it imports) between runs, a run already under way finishes with the code it started with, and
every run records the SHA-256 of the entrypoint it ran."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from .stack import Stack, wait_until

FLOWS = """
import time

import helper
from flowbus import flow

VERSION = "{version}"


@flow
def alpha(seconds: float = 0) -> str:
    time.sleep(seconds)
    return f"alpha {{VERSION}} {{helper.VALUE}}"


@flow
def beta() -> str:
    return f"beta {{VERSION}} {{helper.VALUE}}"
"""


def write(folder: Path, version: str) -> str:
    """Write both files at ``version``; the SHA-256 of the flows' file."""
    (folder / "helper.py").write_text(f'VALUE = "helper {version}"\n')
    source = FLOWS.format(version=version)
    (folder / "several.py").write_text(source)
    return hashlib.sha256(source.encode()).hexdigest()


@pytest.fixture
def stack(stack: Stack) -> Stack:
    stack.start_orchestrator()
    return stack


async def test_an_edited_flow_file_is_picked_up_and_runs_in_flight_keep_theirs(
    stack: Stack, tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    first = write(folder, "v1")
    deploy = {"folder": folder, "file": "several.py"}
    alpha, beta = stack.deploy("alpha", **deploy), stack.deploy("beta", **deploy)
    stack.start_agent("agent-a")
    async with stack.client() as client:
        slow = await client.submit(alpha, {"seconds": 3})
        early = await client.submit(beta, {})
        wait_until(lambda: stack.states(slow.run_id)[-1:] == ["Running"], what="the slow run")
        assert (await client.wait(early.run_id, timeout=60)).completed
        second = write(folder, "v2")  # edited (both files) while the slow run is under way
        stack.deploy("alpha", **deploy)
        stack.deploy("beta", **deploy)
        late = [await client.submit(name, {}) for name in (alpha, beta)]
        results = {
            run.run_id: await client.result(run.run_id)
            for run in (slow, early, *late)
            if (await client.wait(run.run_id, timeout=60)).completed
        }
    assert results == {
        slow.run_id: "alpha v1 helper v1",
        early.run_id: "beta v1 helper v1",
        late[0].run_id: "alpha v2 helper v2",
        late[1].run_id: "beta v2 helper v2",
    }
    for run, expected in ((slow, first), (early, first), (late[0], second), (late[1], second)):
        shown = json.loads(stack.cli("runs", "show", run.run_id, "--json").stdout)
        assert shown["code_hash"] == expected
    assert f"code: sha256 {second[:12]}" in stack.cli("runs", "show", late[0].run_id).stdout
    deployment = httpx.get(f"{stack.api_url}/api/v1/deployments/{alpha}").json()
    assert deployment["entrypoint_hash"] == second
