"""Runs that resume where they stopped: a run that executes again (its agent died, a retry, a
resume) replays the tasks it completed before; only the interrupted task runs again. Each task
body appends its name to a ledger file, so how often each ran is counted, not assumed."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest

from flowbus.client import ClientError
from flowbus.engine.results import read_output

from .stack import Stack, wait_until

#: How a retried run ends (not Failed, which it was before the retry).
FINAL_AFTER_RETRY = {"Completed", "Crashed", "Cancelled"}


@pytest.fixture
def stack(stack: Stack) -> Stack:
    stack.start_orchestrator()
    return stack


def executions(ledger: Path) -> Counter[str]:
    return Counter(ledger.read_text().splitlines()) if ledger.exists() else Counter()


def task_states(stack: Stack, run_id: str) -> list[tuple[str, str]]:
    """(task run name, state name) of each final task-run state, in order."""
    names: dict[str, str] = {}
    out = []
    for event in stack.stream(run_id):
        if event.type == "task_run.created":
            names[event.data["task_run_id"]] = event.data["name"]
        elif event.type == "task_run.state" and event.data["state"]["type"] == "COMPLETED":
            out.append((names[event.data["task_run_id"]], event.data["state"]["name"]))
    return out


async def test_an_agent_killed_in_the_third_task_the_run_resumes_there(
    stack: Stack, tmp_path: Path
) -> None:
    """kill -9 of the agent while the third of three tasks runs (a flow without retries): the
    run is recovered, the first two tasks replay (their bodies ran once), the third runs again."""
    ledger, marker = tmp_path / "ledger", tmp_path / "marker"
    deployment = stack.deploy("three_steps")
    agents = {name: stack.start_agent(name) for name in ("agent-a", "agent-b")}
    async with stack.client() as client:
        run = await client.submit(
            deployment, {"ledger": str(ledger), "marker": str(marker), "action": "hang"}
        )
        wait_until(lambda: executions(ledger)["third"] == 1, what="the third task to start")
        claims = [e.data["agent"] for e in stack.stream(run.run_id) if e.data.get("attempt")]
        agents[claims[-1]].signal(signal.SIGKILL)
        final = await client.wait(run.run_id, timeout=90)
    assert final.completed, final
    assert executions(ledger) == {"first": 1, "second": 1, "third": 2}
    states = stack.final_states(run.run_id)
    assert states == ["Scheduled", "Pending", "Running", "Crashed", "AwaitingRetry", "Pending",
                      "Running", "Completed"]  # fmt: skip
    assert task_states(stack, run.run_id) == [
        ("step-0", "Completed"), ("step-1", "Completed"),  # the first attempt; then the second:
        ("step-0", "Replayed"), ("step-1", "Replayed"), ("step-2", "Completed"),
    ]  # fmt: skip
    replayed = [
        e.data
        for e in stack.stream(run.run_id)
        if e.type == "task_run.state" and e.data["state"]["name"] == "Replayed"
    ]
    assert all(d["replayed_from"] == 1 for d in replayed)
    assert "replayed from attempt 1" in replayed[0]["state"]["message"]
    # The second task's result is a tuple: not JSON, so it is in result storage, read back.
    second = replayed[1]["output"]
    assert second["json"] == ["second", "done"]
    assert read_output(second["ref"]) == ("second", "done")
    last = [e.data for e in stack.stream(run.run_id) if e.type == "flow_run.state"][-1]
    assert last["output"]["json"] == ["first done", ["second", "done"], "third done"]
    assert stack.with_store(lambda s: s.verify_projections()) == []


async def test_retry_restarts_from_the_failed_task(stack: Stack, tmp_path: Path) -> None:
    ledger, marker = tmp_path / "ledger", tmp_path / "marker"
    deployment = stack.deploy("three_steps", crash_retries=0)
    stack.start_agent("agent-a")
    async with stack.client() as client:
        run = await client.submit(
            deployment, {"ledger": str(ledger), "marker": str(marker), "action": "fail"}
        )
        failed = await client.wait(run.run_id, timeout=60)
        assert failed.name == "Failed"
        assert executions(ledger) == {"first": 1, "second": 1, "third": 1}
        await client.retry(run.run_id)
    wait_until(lambda: stack.states(run.run_id)[-1] in FINAL_AFTER_RETRY, 60, "the retry to end")
    assert stack.states(run.run_id)[-1] == "Completed"
    assert executions(ledger) == {"first": 1, "second": 1, "third": 2}
    assert [state for _, state in task_states(stack, run.run_id)] == [
        "Completed", "Completed", "Replayed", "Replayed", "Completed",
    ]  # fmt: skip


async def test_a_missing_result_runs_the_task_again(stack: Stack, tmp_path: Path) -> None:
    """A stored result that is gone is no failure: its task runs again."""
    ledger, marker = tmp_path / "ledger", tmp_path / "marker"
    deployment = stack.deploy("three_steps", crash_retries=0)
    stack.start_agent("agent-a")
    async with stack.client() as client:
        run = await client.submit(
            deployment, {"ledger": str(ledger), "marker": str(marker), "action": "fail"}
        )
        await client.wait(run.run_id, timeout=60)
        refs = [
            e.data["output"]["ref"]
            for e in stack.stream(run.run_id)
            if e.type == "task_run.state" and "ref" in (e.data.get("output") or {})
        ]
        assert len(refs) == 1  # the second task's tuple
        Path(refs[0]).unlink()
        await client.retry(run.run_id)
    wait_until(lambda: stack.states(run.run_id)[-1] in FINAL_AFTER_RETRY, 60, "the retry to end")
    assert stack.states(run.run_id)[-1] == "Completed"
    assert executions(ledger) == {"first": 1, "second": 2, "third": 2}


def test_a_resumed_run_replays_the_tasks_before_its_pause(stack: Stack, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    stack.deploy("step_pause_step")
    stack.start_agent("agent-a")
    run_id = stack.submit_over_http("step-pause-step/test", ledger=str(ledger))
    wait_until(lambda: stack.states(run_id)[-1:] == ["Paused"], what="the run to pause")
    stack.cli("runs", "resume", run_id)
    assert stack.final_states(run_id)[-1] == "Completed"
    assert executions(ledger) == {"first": 1, "after the pause": 1}
    assert [state for _, state in task_states(stack, run_id)] == [
        "Completed", "Replayed", "Completed",
    ]  # fmt: skip


async def test_results_as_json_over_nats_the_api_and_the_cli(stack: Stack, tmp_path: Path) -> None:
    import httpx

    ledger = tmp_path / "ledger"
    quick, three_steps = stack.deploy("quick"), stack.deploy("three_steps")
    stack.start_agent("agent-a")
    async with stack.client() as client:
        number = await client.submit(quick, {"n": 4})
        mixed = await client.submit(three_steps, {"ledger": str(ledger)})
        for run in (number, mixed):
            assert (await client.wait(run.run_id, timeout=60)).completed
        # ``wait`` returned once the store holds the final state: the API agrees at once.
        api = f"{stack.api_url}/api/v1/runs"
        assert httpx.get(f"{api}/{number.run_id}").json()["state_name"] == "Completed"
        assert await client.result(number.run_id) == 12
        # Not JSON (a tuple inside): the exact value from result storage, a rendering in JSON.
        exact = ["first done", ("second", "done"), "third done"]
        assert await client.result(mixed.run_id) == exact
    got = httpx.get(f"{api}/{number.run_id}/result").json()
    assert (got["result"], got["result_ref"], got["result_summary"]) == (12, None, "12")
    got = httpx.get(f"{api}/{mixed.run_id}/result").json()
    assert got["result"] == ["first done", ["second", "done"], "third done"]
    assert got["result_ref"].endswith("/flow-run")
    detail = httpx.get(f"{api}/{number.run_id}").json()
    assert (detail["result"], detail["result_summary"]) == (12, "12")
    assert [t["result"] for t in detail["task_runs"]] == [0, 2, 4, 6]
    cli = stack.cli("runs", "result", number.run_id)
    assert json.loads(cli.stdout) == 12
    cli = stack.cli("runs", "result", mixed.run_id)
    assert cli.stdout.strip() == repr(exact)
    cli = stack.cli("runs", "result", mixed.run_id, "--json")
    assert json.loads(cli.stdout)["result_summary"] == repr(exact)

    failing = stack.deploy("fails")
    async with stack.client() as client:
        run = await client.submit(failing, {})
        await client.wait(run.run_id, timeout=60)
        with pytest.raises(ClientError) as refused:
            await client.result(run.run_id)
    assert refused.value.code == "not_completed"
    answer = httpx.get(f"{api}/{run.run_id}/result")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "not_completed"
    assert stack.cli("runs", "result", run.run_id, check=False).returncode != 0


async def test_a_subflow_completed_before_the_crash_replays(stack: Stack, tmp_path: Path) -> None:
    ledger, marker = tmp_path / "ledger", tmp_path / "marker"
    deployment = stack.deploy("with_subflow")
    agents = {name: stack.start_agent(name) for name in ("agent-a", "agent-b")}
    async with stack.client() as client:
        run = await client.submit(deployment, {"ledger": str(ledger), "marker": str(marker)})
        wait_until(lambda: executions(ledger)["after"] == 1, what="the task after the subflow")
        claims = [e.data["agent"] for e in stack.stream(run.run_id) if e.data.get("attempt")]
        agents[claims[-1]].signal(signal.SIGKILL)
        final = await client.wait(run.run_id, timeout=90)
        assert final.completed, final
        assert await client.result(run.run_id) == "3 rows, after done"
    assert executions(ledger) == {"inner": 1, "after": 2}
    subflows = stack.with_store(lambda s: s.list_flow_runs(parent_run_id=run.run_id))
    assert sorted(s.state_name for s in subflows) == ["Completed", "Replayed"]
