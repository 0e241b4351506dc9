"""Concurrency limits against real agents and a real nats-server: a tag's limit holds across
agents with slots granted by push, slots of a killed agent come back, and a deployment's limit
enqueues or cancels runs over it."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import httpx

from tests.integration.stack import Stack, wait_until


def task_intervals(stack: Stack, run_ids: list[str]) -> list[tuple[datetime, datetime]]:
    """(Running, Completed) times of every task run of these flow runs, from the event log."""
    intervals = []
    for run_id in run_ids:
        started: dict[str, datetime] = {}
        for event in stack.stream(run_id):
            if event.type != "task_run.state":
                continue
            state = event.data["state"]
            at = datetime.fromisoformat(state["timestamp"])
            if state["type"] == "RUNNING":
                started[event.data["task_run_id"]] = at
            elif state["type"] == "COMPLETED":
                intervals.append((started.pop(event.data["task_run_id"]), at))
    return intervals


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def test_200_tasks_under_a_limit_of_3_across_2_agents(stack: Stack) -> None:
    stack.cli("limit", "set", "db", "3")
    stack.start_orchestrator()
    stack.deploy("limited")
    stack.start_agent("agent-1", "-c", "1")  # one flow run each: both agents run one
    stack.start_agent("agent-2", "-c", "1")
    began = time.monotonic()
    runs = [stack.submit_over_http("limited/test", n=100, seconds=0.05) for _ in range(2)]
    for run_id in runs:
        assert stack.final_states(run_id, timeout=60)[-1] == "Completed"
    elapsed = time.monotonic() - began

    intervals = task_intervals(stack, runs)
    assert len(intervals) == 200
    assert most_at_once(intervals) == 3  # never more, and the slots were used
    agents = {e.data.get("agent") for r in runs for e in stack.stream(r) if e.data.get("agent")}
    assert agents == {"agent-1", "agent-2"}  # both agents ran, sharing the three slots
    busy = sum((end - start).total_seconds() for start, end in intervals)
    ideal = busy / 3
    print(f"200 tasks x 50 ms under a limit of 3: {elapsed:.2f} s, ideal {ideal:.2f} s")
    limits = json.loads(stack.cli("limit", "ls", "--json").stdout)["limits"]
    assert [(x["tag"], x["limit"], x["active"], x["waiting"]) for x in limits] == [("db", 3, 0, 0)]


def test_a_killed_agents_slots_come_back(stack: Stack) -> None:
    stack.cli("limit", "set", "db", "2")
    stack.start_orchestrator()
    stack.deploy("limited", crash_retries=0)  # a crash is final: the run is not taken over
    doomed = stack.start_agent("doomed")
    stuck = stack.submit_over_http("limited/test", n=2, seconds=60)
    wait_until(
        lambda: [x["active"] for x in json.loads(stack.cli("limit", "ls", "--json").stdout)[
            "limits"]] == [2],
        what="the doomed agent to hold both slots",
    )  # fmt: skip
    doomed.kill()
    stack.start_agent("survivor")
    # The lease runs out (2 s here): the slots come back, and another run takes them.
    quick = stack.submit_over_http("limited/test", n=4, seconds=0.05)
    assert stack.final_states(quick, timeout=30)[-1] == "Completed"
    assert stack.final_states(stuck, timeout=30)[-1] == "Crashed"  # no crash budget: it stays so
    limits = json.loads(stack.cli("limit", "ls", "--json").stdout)["limits"]
    holders = {h["run_id"] for h in limits[0]["holders"]}
    assert quick not in holders
    assert all(h["agent"] != "doomed" for h in limits[0]["holders"])


def test_an_orchestrator_restart_forgets_no_slot(stack: Stack) -> None:
    stack.cli("limit", "set", "db", "2")
    stack.start_orchestrator()
    stack.deploy("limited")
    stack.start_agent("agent-1")
    run_id = stack.submit_over_http("limited/test", n=6, seconds=4)
    wait_until(
        lambda: sum(e.type == "task_run.state" and e.data["state"]["type"] == "RUNNING"
                    for e in stack.stream(run_id)) >= 2,
        what="two task runs to hold the slots",
    )  # fmt: skip
    stack.orchestrator.kill()  # type: ignore[union-attr]
    stack.start_orchestrator()  # its table is empty: the agent's heartbeat fills it again
    assert stack.final_states(run_id, timeout=60)[-1] == "Completed"
    intervals = task_intervals(stack, [run_id])
    assert len(intervals) == 6
    assert most_at_once(intervals) == 2


def test_a_sync_flows_tasks_wait_for_slots_too(stack: Stack) -> None:
    stack.cli("limit", "set", "db", "1")
    stack.start_orchestrator()
    stack.deploy("limited_sync")
    stack.start_agent("agent-1")
    run_id = stack.submit_over_http("limited-sync/test", n=6, seconds=0.05)
    assert stack.final_states(run_id, timeout=30)[-1] == "Completed"
    assert most_at_once(task_intervals(stack, [run_id])) == 1


def test_a_deployment_limit_enqueues_or_cancels(stack: Stack) -> None:
    stack.start_orchestrator()
    stack.start_agent("agent-1", "-c", "10")
    stack.cli("deploy", "flows.py:sleepy", "-n", "one-at-a-time", "--concurrency-limit", "1")
    stack.cli("deploy", "flows.py:sleepy", "-n", "or-none", "--concurrency-limit", "1",
              "--collision", "cancel")  # fmt: skip
    queued = [stack.submit_over_http("sleepy/one-at-a-time", seconds=0.5) for _ in range(3)]
    first = stack.submit_over_http("sleepy/or-none", seconds=2)
    wait_until(lambda: "Running" in stack.states(first), what="the first run to start")
    refused = stack.submit_over_http("sleepy/or-none", seconds=2)
    assert stack.final_states(refused)[-1] == "Cancelled"
    cancelled = stack.stream(refused)[-1].data["state"]["message"]
    assert "concurrency limit 1" in cancelled and "collision strategy cancel" in cancelled
    assert stack.final_states(first)[-1] == "Completed"

    for run_id in queued:
        assert stack.final_states(run_id, timeout=30)[-1] == "Completed"
    spans = []
    for run_id in queued:
        times = {e.data["state"]["type"]: datetime.fromisoformat(e.data["state"]["timestamp"])
                 for e in stack.stream(run_id) if e.type == "flow_run.state"}  # fmt: skip
        spans.append((times["RUNNING"], times["COMPLETED"]))
    assert most_at_once(spans) == 1  # one at a time, each started when the one before ended
    detail = httpx.get(f"{stack.api_url}/api/v1/deployments/sleepy/one-at-a-time").json()
    assert (detail["concurrency_limit"], detail["collision"]) == (1, "enqueue")


def test_a_global_limit_holds_across_agents(stack: Stack, tmp_path: Path) -> None:
    stack.cli("gcl", "create", "warehouse", "--limit", "2")
    shown = json.loads(stack.cli("gcl", "inspect", "warehouse", "--json").stdout)
    assert shown == {"name": "warehouse", "limit": 2, "active": True,
                     "slot_decay_per_second": 0.0}  # fmt: skip
    stack.start_orchestrator()
    stack.deploy("warehouse_load")
    stack.start_agent("agent-1", "-c", "1")
    stack.start_agent("agent-2", "-c", "1")
    probe = tmp_path / "held.txt"
    runs = [stack.submit_over_http("warehouse-load/test", path=str(probe), n=10)
            for _ in range(2)]  # fmt: skip
    for run_id in runs:
        assert stack.final_states(run_id, timeout=60)[-1] == "Completed"
    steps = sorted((float(t), int(step)) for t, step in
                   (line.split() for line in probe.read_text().splitlines()))  # fmt: skip
    assert len(steps) == 40
    now = peak = 0
    for _, step in steps:
        now += step
        peak = max(peak, now)
    assert peak == 2  # never more across the two agents, and both slots were used
