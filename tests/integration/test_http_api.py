"""The HTTP API over real HTTP, served by ``flowbus server start`` next to a real stack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from flowbus.api.server import ApiServer
from flowbus.engine.errors import UsageError
from flowbus.engine.store import MemoryEventStore

from .stack import Stack, wait_until


@pytest.fixture
def stack(stack: Stack) -> Stack:
    """The shared stack, with an orchestrator."""
    stack.start_orchestrator()
    return stack


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api_url + "/api/v1", timeout=30) as client:
        yield client


async def test_submit_watch_and_read_a_run_over_http(stack: Stack, api: httpx.AsyncClient) -> None:
    deployment = stack.deploy("quick")
    stack.start_agent("agent-1")
    listed = (await api.get("/deployments")).json()
    assert [d["name"] for d in listed] == [deployment]
    detail = (await api.get("/deployments/quick/test")).json()
    assert detail["parameter_schema"]["properties"]["n"]["type"] == "integer"

    created = await api.post("/deployments/quick/test/runs", json={"parameters": {"n": "3"}})
    assert created.status_code == 201, created.text
    run_id = created.json()["run_id"]
    wait_until(lambda: stack.states(run_id)[-1:] == ["Completed"], 30, "the run")

    run = (await api.get(f"/runs/{run_id}")).json()
    assert run["state_name"] == "Completed" and run["result"] == 6 and run["result_summary"] == "6"
    assert [s["name"] for s in run["state_history"]] == [
        "Scheduled", "Pending", "Running", "Completed"
    ]  # fmt: skip
    assert len(run["task_runs"]) == 3
    task_runs = (await api.get(f"/runs/{run_id}/task-runs")).json()
    assert [t["name"] for t in task_runs] == ["double-0", "double-1", "double-2"]
    logs = (await api.get(f"/runs/{run_id}/logs")).json()
    assert any("adding 3 doubles" in line["message"] for line in logs["logs"])

    # live: the run's events as server-sent events, from its first
    seen = []
    async with api.stream("GET", "/events/stream", params={"run_id": run_id}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                seen.append(event["type"])
                if event.get("state", {}).get("name") == "Completed":
                    break
    assert seen[0] == "flow_run.created" and "task_run.created" in seen


async def test_listing_filters_and_pages_with_a_cursor(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    deployment = stack.deploy("quick")
    async with stack.client() as client:
        ids = [(await client.submit(deployment, tags=["batch"])).run_id for _ in range(5)]
    pages, cursor = [], None
    while True:
        params: dict[str, str | int] = {"limit": 2, "tag": "batch", "state": "scheduled"}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/runs", params=params)).json()
        pages.append([r["id"] for r in page["runs"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [run_id for page in pages for run_id in page] == list(reversed(ids))
    assert (await api.get("/runs", params={"deployment": "nope/x"})).json()["runs"] == []


async def test_errors_are_json_with_the_right_status(stack: Stack, api: httpx.AsyncClient) -> None:
    stack.deploy("quick")
    cases = [
        (await api.get("/runs/00000000-0000-0000-0000-000000000000"), 404, "not_found"),
        (await api.get("/runs", params={"limit": 0}), 422, "invalid_request"),
        (await api.get("/runs", params={"cursor": "garbage!"}), 422, "invalid_request"),
        (await api.get("/deployments/quick/nope"), 404, "not_found"),
        (await api.post("/deployments/quick/nope/runs", json={}), 404, "unknown_deployment"),
        (await api.post("/deployments/quick/test/runs", json={"parameters": {"n": "x"}}), 422,
         "invalid_parameters"),
        (await api.post("/deployments/quick/test/runs", content=b"{not json"), 422,
         "invalid_request"),
        (await api.get("/nothing/here"), 404, "not_found"),
    ]  # fmt: skip
    for response, status, code in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert response.json()["error"]["code"] == code
    invalid = cases[5][0].json()["error"]
    assert "n\n  Input should be a valid integer" in invalid["message"]
    queues = (await api.get("/queues")).json()  # the deployment's queue, with nothing queued
    assert [(q["settings"]["name"], q["waiting"], q["in_flight"]) for q in queues] == [
        ("default", 0, 0)
    ]
    schema = (await api.get(stack.api_url + "/openapi.json")).json()
    assert "/api/v1/runs/{run_id}" in schema["paths"]


async def test_cancel_queues_and_agents_over_http(stack: Stack, api: httpx.AsyncClient) -> None:
    deployment = stack.deploy("sleepy")
    stack.start_agent("agent-1")
    async with stack.client() as client:
        run = await client.submit(deployment, {"seconds": 30})
    wait_until(lambda: stack.states(run.run_id)[-1:] == ["Running"], 30, "the run to start")
    cancelled = (await api.post(f"/runs/{run.run_id}/cancel")).json()
    assert cancelled == {"run_id": run.run_id, "state": "Cancelling"}
    wait_until(lambda: stack.states(run.run_id)[-1:] == ["Cancelled"], 10, "the cancel")

    paused = (await api.post("/queues/default/pause")).json()
    assert paused["settings"]["paused"] is True
    assert (await api.post("/queues/default/resume")).json()["settings"]["paused"] is False
    for _ in range(50):
        agents = (await api.get("/agents")).json()
        if agents and not agents[0]["runs"]:
            break
        await asyncio.sleep(0.1)
    assert [(a["name"], a["alive"], a["runs"]) for a in agents] == [("agent-1", True, [])]


async def test_a_token_guards_every_request(tmp_path: Path) -> None:
    stack = Stack(tmp_path, env={"FLOWBUS_API_TOKEN": "s3cret"})
    try:
        stack.start_orchestrator()
        base = stack.api_url + "/api/v1"
        async with httpx.AsyncClient(base_url=base) as api:
            assert (await api.get("/runs")).status_code == 401
            wrong = await api.get("/runs", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
            right = await api.get("/runs", headers={"Authorization": "Bearer s3cret"})
            assert right.status_code == 200
        async with httpx.AsyncClient(base_url=stack.api_url) as ops:
            assert (await ops.get("/metrics")).status_code == 401  # scraped with the token
            scraped = await ops.get("/metrics", headers={"Authorization": "Bearer s3cret"})
            assert "flowbus_flow_runs" in scraped.text
            assert (await ops.get("/healthz")).status_code == 200  # probes need no token
    finally:
        stack.close()


def test_without_a_token_the_api_listens_on_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWBUS_API_TOKEN", raising=False)
    with pytest.raises(UsageError, match="only with \\$FLOWBUS_API_TOKEN"):
        ApiServer(MemoryEventStore(), "nats://127.0.0.1:1", host="0.0.0.0")
