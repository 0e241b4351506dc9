"""Prefect's API against a real nats-server, orchestrator and agent: artifacts of deployed runs
in the API and the CLI, run_deployment, resume_flow_run, emit_event to the custom stream, and
flow.serve running its own deployment."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.stack import FLOWS_DIR, Stack, wait_until


@pytest.fixture
def stack(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """An orchestrator and an agent; this process talks to them as a user's script would."""
    stack.start_orchestrator()
    monkeypatch.setenv("FLOWBUS_NATS_URL", stack.url)
    monkeypatch.setenv("FLOWBUS_HOME", str(stack.home))
    monkeypatch.delenv("FLOWBUS_STORE_URL", raising=False)
    yield stack


def test_artifacts_of_a_deployed_run_in_the_api_and_the_cli(stack: Stack) -> None:
    stack.deploy("with_artifacts")
    stack.start_agent("agent-1")
    run_id = stack.submit_over_http("with-artifacts/test", rows=3)
    assert stack.final_states(run_id)[-1] == "Completed"
    api = f"{stack.api_url}/api/v1"
    wait_until(lambda: len(httpx.get(f"{api}/runs/{run_id}/artifacts").json()) == 2,
               what="the artifacts to be recorded")  # fmt: skip
    listed = httpx.get(f"{api}/runs/{run_id}/artifacts").json()
    assert [(a["key"], a["type"]) for a in listed] == [("rows-table", "table"),
                                                       ("rows-report", "markdown")]  # fmt: skip
    latest = httpx.get(f"{api}/artifacts/rows-report").json()
    assert latest["data"] == "# Report\n3 rows" and latest["flow_run_id"] == run_id
    assert httpx.get(f"{api}/artifacts/never-made").status_code == 404
    shown = json.loads(stack.cli("runs", "show", run_id, "--json").stdout)
    assert shown["artifacts"][0]["data"] == [{"row": 0}, {"row": 1}, {"row": 2}]
    assert "rows-report" in stack.cli("runs", "show", run_id).stdout
    assert shown["result"] == "test:with-artifacts/test"  # runtime.deployment in the run


def test_run_deployment_waits_or_returns_at_once(stack: Stack) -> None:
    from flowbus.client import ClientError
    from flowbus.deployments import run_deployment

    stack.deploy("quick")
    stack.start_agent("agent-1")
    finished = run_deployment("quick/test", parameters={"n": 4}, timeout=60)
    assert finished.state is not None and finished.state.is_completed()
    assert finished.state.result() == 12  # the flow's value, as Prefect's state gives it
    queued = run_deployment("quick/test", timeout=0)
    assert queued.state is not None and queued.state.is_scheduled()
    assert stack.final_states(queued.id)[-1] == "Completed"
    with pytest.raises(ClientError):
        run_deployment("quick/test", parameters={"n": "many"})
    with pytest.raises(ClientError):
        run_deployment("nope/missing")


def test_resume_flow_run_and_async_run_deployment(stack: Stack) -> None:
    from flowbus.deployments import run_deployment
    from flowbus.flow_runs import resume_flow_run

    stack.deploy("needs_approval")
    stack.start_agent("agent-1")

    async def start() -> str:
        run = await run_deployment("needs-approval/test", timeout=0)
        return run.id

    run_id = asyncio.run(start())
    wait_until(lambda: stack.states(run_id)[-1:] == ["Paused"], what="the run to pause")
    assert resume_flow_run(run_id, run_input={"approved": True, "note": "ok"}) == "Scheduled"
    assert stack.final_states(run_id)[-1] == "Completed"


def test_emit_event_reaches_the_custom_stream(stack: Stack) -> None:
    from flowbus.broker import subjects
    from flowbus.events import emit_event

    related = [{"prefect.resource.id": "bucket.b", "prefect.resource.role": "bucket"}]
    earlier = emit_event("file.listed", {"prefect.resource.id": "s3://b"})
    event = emit_event("file.uploaded", {"prefect.resource.id": "s3://b/r.csv", "team": "fin"},
                       payload={"rows": 5}, related=related, follows=earlier)  # fmt: skip
    emit_event("file.uploaded", {"prefect.resource.id": "s3://b/r.csv"}, id=event.id)

    async def last() -> tuple[int, dict[str, object]]:
        async with stack.client() as client:
            js = client.nats.jetstream()
            info = await js.stream_info(subjects.CUSTOM_STREAM)
            message = await js.get_last_msg(subjects.CUSTOM_STREAM, "flowbus.custom.>")
            return info.state.messages, json.loads(message.data)

    count, body = asyncio.run(last())
    assert count == 2  # the same id twice is one event
    assert body["resource"] == "s3://b/r.csv" and body["labels"] == {"team": "fin"}
    assert body["payload"] == {"rows": 5} and body["type"] == "file.uploaded"
    assert body["related"] == related and body["follows"] == earlier.id


def test_flow_serve_runs_its_own_deployment_until_interrupted(stack: Stack) -> None:
    from flowbus.deployments import run_deployment

    code = "from flows import quick; quick.serve(name='served', parameters={'n': 2})"
    env = {**stack.env, "FLOWBUS_HOME": str(stack.home)}
    serving = subprocess.Popen(
        [sys.executable, "-c", code], cwd=FLOWS_DIR, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert serving.stdout is not None
        first = serving.stdout.readline()
        assert "serving deployment 'quick/served' on queue 'serve-quick'" in first, first
        run = run_deployment("quick/served", timeout=60)
        assert run.state is not None and run.state.is_completed()
        serving.send_signal(signal.SIGINT)
        assert serving.wait(timeout=60) == 0
    finally:
        if serving.poll() is None:
            os.kill(serving.pid, signal.SIGKILL)
            serving.wait()


def test_a_scheduled_run_sees_its_slot_as_its_scheduled_start_time(stack: Stack) -> None:
    from datetime import UTC, datetime, timedelta

    stack.deploy("scheduled_slot")
    stack.start_agent("agent-1")
    slot = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)

    async def run() -> str | None:
        async with stack.client() as client:
            submitted = await client.submit("scheduled-slot/test", scheduled_time=slot)
            return (await client.wait(submitted.run_id, timeout=120)).result

    assert asyncio.run(run()) == repr(slot.isoformat())
