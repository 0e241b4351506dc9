"""Two versions side by side, as during an upgrade host by host: the previous release's agent
(built from its commit, ``[tool.flowbus.previous-release]`` in pyproject.toml) against this
code's orchestrator, and the previous release's orchestrator against this code's agent. Runs
complete with their results, a cancel reaches the other version's agent, nothing is
dead-lettered. And a sender of a newer minor version (a field this code does not know, with
``Flowbus-Protocol`` saying so) is taken, where the same field from a sender of this version is
refused as a mistake.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from flowbus.broker import subjects, versions
from flowbus.engine.records import make_record
from tests.integration.stack import FLOWS_DIR, Stack, until, wait_until
from tests.integration.store_contract import RunBuilder
from tests.integration.test_forged_events import dead_letter_reasons
from tests.integration.test_hostile_agent import dead_letters  # noqa: F401 - shared helper

ROOT = Path(__file__).resolve().parents[2]
PREVIOUS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flowbus"][
    "previous-release"
]


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The previous release's source tree, from git (``git archive`` of its commit)."""
    commit = PREVIOUS["commit"]
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit],
                                 capture_output=True, timeout=120, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"the previous release's commit {commit[:10]} is not in this clone: {exc}")
    tree = tmp_path_factory.mktemp("previous-release")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="tar")
    yield tree


def old_env(tree: Path) -> dict[str, str]:
    """A daemon of the previous release: its source first on the path (same dependencies)."""
    return {"PYTHONPATH": f"{tree}{os.pathsep}{FLOWS_DIR}"}


def its_version(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", "import flowbus; print(flowbus.__version__, "
                           "flowbus.__file__)"], env={**os.environ, **env}, cwd=FLOWS_DIR,
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return done.stdout.strip()


async def runs_and_a_cancel(stack: Stack) -> None:
    """Three runs complete with their results; a long one is cancelled at its agent."""
    quick, sleepy = stack.deploy("quick"), stack.deploy("sleepy")
    async with stack.client() as client:
        runs = [(await client.submit(quick, {"n": n})).run_id for n in (2, 3, 4)]
        for run, n in zip(runs, (2, 3, 4), strict=True):
            final = await client.wait(run, timeout=90)
            assert final.name == "Completed", (run, final)
            assert await client.result(run) == sum(2 * i for i in range(n))
        long = (await client.submit(sleepy, {"seconds": 60})).run_id
        await until(lambda: _running(stack, long), 60, "the long run to start")
        assert await client.cancel(long) in ("Cancelling", "Cancelled")
        assert (await client.wait(long, timeout=90)).name == "Cancelled"


async def _running(stack: Stack, run_id: str) -> bool:
    return "Running" in stack.states(run_id)


@pytest.mark.parametrize("old", ["agent", "orchestrator"])
async def test_the_previous_release_and_this_one_run_runs_together(
    old: str, previous_release: Path, tmp_path: Path
) -> None:
    env = old_env(previous_release)
    assert its_version(env).startswith(f"{PREVIOUS['version']} {previous_release}")
    stack = Stack(tmp_path)
    try:
        stack.start_orchestrator(extra_env=env if old == "orchestrator" else None)
        agent = stack.start_agent("agent-1", env=env if old == "agent" else None)
        await runs_and_a_cancel(stack)
        assert await dead_letter_reasons(stack.url) == []
        assert "Traceback" not in agent.output()
        assert stack.with_store(lambda s: s.verify_projections()) == []
    finally:
        stack.close()


async def test_a_newer_minors_additions_are_taken_and_the_same_from_this_version_refused(
    tmp_path: Path,
) -> None:
    newer = {versions.HEADER: f"{versions.MAJOR}.{versions.MINOR + 1}"}
    stack = Stack(tmp_path)
    try:
        stack.start_orchestrator()
        deployment = stack.deploy("quick")
        connection = await nats.connect(stack.url)
        try:
            submit = json.dumps({"deployment": deployment, "parameters": {"n": 1},
                                 "priority_hint": 3}).encode()  # fmt: skip
            refused = await connection.request(subjects.SUBMIT, submit, timeout=10)
            assert json.loads(refused.data)["error"]["code"] == "bad_request"
            assert "priority_hint" in json.loads(refused.data)["error"]["message"]
            taken = await connection.request(subjects.SUBMIT, submit, timeout=10, headers=newer)
            assert json.loads(taken.data)["ok"] is True, taken.data
            other_major = {versions.HEADER: f"{versions.MAJOR + 1}.0"}
            wrong = await connection.request(subjects.SUBMIT, submit, timeout=10,
                                             headers=other_major)  # fmt: skip
            assert "upgrade every process" in json.loads(wrong.data)["error"]["message"]

            # An event of a run by hand with a field this version does not know.
            for headers, recorded in ((newer, True), ({}, False)):
                run = RunBuilder()
                created = run.created()
                body = {k: v for k, v in created.data.items()} | {"lineage": ["from 1.x"]}
                record = make_record(run.run_id, 1, created.type,
                                     {k: v for k, v in body.items() if k not in (
                                         "schema_version", "id", "stream_id", "seq", "occurred",
                                         "type")}, event_id=created.id)  # fmt: skip
                await connection.jetstream().publish(
                    subjects.event_subject(run.run_id, record.type), record.body(),
                    headers={"Nats-Msg-Id": record.id, **headers},
                )  # fmt: skip
                if recorded:
                    wait_until(lambda r=run: len(stack.stream(r.run_id)) == 1, 30, "recorded")
                    # Stored as it came: a newer orchestrator reading it later knows the field.
                    assert stack.stream(run.run_id)[0].data["lineage"] == ["from 1.x"]
                else:

                    async def refused_event() -> bool:
                        return any("malformed" in r for r in await dead_letter_reasons(stack.url))

                    await until(refused_event, 30, "the event to be dead-lettered")
                    assert stack.stream(run.run_id) == []
        finally:
            await connection.close()
    finally:
        stack.close()
