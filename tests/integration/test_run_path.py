"""The path of a run through real daemons: submit, claim, run, record; and what refuses what."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from flowbus.client import ClientError
from flowbus.engine.deployments import build_deployment, save_deployment
from flowbus.engine.entrypoints import load_flow
from flowbus.engine.store import SqliteEventStore

from .stack import FLOWS_DIR, Stack, wait_until


@pytest.fixture
def stack(stack: Stack) -> Stack:
    """The shared stack, with an orchestrator."""
    stack.start_orchestrator()
    return stack


async def test_a_submitted_run_completes_with_its_result_and_every_event(stack: Stack) -> None:
    deployment = stack.deploy("quick")
    stack.start_agent("agent-1")
    async with stack.client() as client:
        run = await client.submit(deployment, {"n": "4"})  # coerced by the deployment's schema
        final = await client.wait(run.run_id, timeout=30)
        assert final.completed and final.result == "12"
        assert stack.final_states(run.run_id) == ["Scheduled", "Pending", "Running", "Completed"]
        events = stack.stream(run.run_id)
        seen = []
        async for event in client.events(run_id=run.run_id):
            seen.append(event.type)
            if len(seen) == len(events):
                break
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(e.type == "task_run.created" for e in events) == 4
    assert any(e.type == "log" and "adding 4 doubles" in e.data["message"] for e in events)
    assert seen == [e.type for e in events]  # subscribers see exactly what the store holds
    claim = events[1].data
    assert claim["agent"] == "agent-1" and claim["attempt"] == 1
    assert stack.with_store(lambda s: s.verify_projections()) == []


async def test_bad_submissions_get_clear_errors_and_queue_nothing(stack: Stack) -> None:
    deployment = stack.deploy("quick")
    async with stack.client() as client:
        with pytest.raises(ClientError) as unknown:
            await client.submit("quick/nope")
        assert unknown.value.code == "unknown_deployment"
        assert deployment in unknown.value.details["known"]

        with pytest.raises(ClientError) as invalid:
            await client.submit(deployment, {"n": "many"})
        assert invalid.value.code == "invalid_parameters"
        assert "n\n  Input should be a valid integer" in str(invalid.value)
        assert invalid.value.details[0]["loc"] == ["n"]

        with pytest.raises(ClientError) as extra:
            await client.submit(deployment, {"m": 1})
        assert "Extra inputs are not permitted" in str(extra.value)

        runs_stream = await client.nats.jetstream().stream_info("FLOWBUS_RUNS")
    assert runs_stream.state.messages == 0
    assert stack.with_store(lambda s: s.list_flow_runs()) == []


async def test_a_deployment_that_does_not_enforce_its_schema_lets_the_flow_check(
    stack: Stack,
) -> None:
    """Prefect's ``enforce_parameter_schema: false``: a submission is taken as given, and the
    flow's own check fails the run when it starts."""
    deployment = stack.deploy("quick", name="loose", enforce=False)
    stack.start_agent("agent-1")
    async with stack.client() as client:
        run = await client.submit(deployment, {"n": "many"})
        final = await client.wait(run.run_id, timeout=60)
    assert final.name == "Failed"
    assert "ParameterTypeError" in (final.message or "") or "valid integer" in (final.message or "")
    assert stack.with_store(lambda s: s.get_flow_run(run.run_id)).parameters == {"n": "many"}


async def test_a_cancel_during_a_retry_delay_ends_it_at_once(stack: Stack) -> None:
    """The retry delay is a sleep flowbus owns: a cancel ends it, the task run ends Cancelled,
    no thread is abandoned and the agent stops cleanly."""
    deployment = stack.deploy("waits_to_retry")
    agent = stack.start_agent("agent-1")
    async with stack.client() as client:
        run = await client.submit(deployment)

        def awaiting_retry() -> bool:
            tasks = stack.with_store(lambda s: s.list_task_runs(run.run_id))
            return any(t.state_name == "AwaitingRetry" for t in tasks)

        wait_until(awaiting_retry, 60, "the task to wait out its retry delay")
        assert await client.cancel(run.run_id) == "Cancelling"
        # Well before the 30 s delay would have ended (a generous bound, not a timing test).
        assert (await client.wait(run.run_id, timeout=20)).name == "Cancelled"
        [holder] = await client.agents()
        assert holder.abandoned == []
    [task_run] = stack.with_store(lambda s: s.list_task_runs(run.run_id))
    assert task_run.state_name == "Cancelled", task_run
    message = stack.stream(run.run_id)[-1].data["state"]["message"] or ""
    assert "abandoned" not in message
    assert agent.stop() == 0
    assert "threads still running" not in agent.output()
    assert "Exception in callback" not in agent.output()


async def test_one_idempotency_key_gives_one_run(stack: Stack) -> None:
    deployment = stack.deploy("quick")
    async with stack.client() as client:
        first, second = await asyncio.gather(
            client.submit(deployment, {"n": 1}, idempotency_key="2026-11-24"),
            client.submit(deployment, {"n": 1}, idempotency_key="2026-11-24"),
        )
        third = await client.submit(deployment, {"n": 1}, idempotency_key="2026-11-24")
        other = await client.submit(deployment, {"n": 1}, idempotency_key="2026-11-25")
        assert first.run_id == second.run_id == third.run_id != other.run_id
        assert sorted([first.created, second.created, third.created]) == [False, False, True]
        # The same key with other parameters is another request: refused, not merged.
        with pytest.raises(ClientError) as conflict:
            await client.submit(deployment, {"n": 2}, idempotency_key="2026-11-24")
        assert conflict.value.code == "idempotency_conflict"
        assert conflict.value.details["run_id"] == first.run_id
        # The run id is UUIDv5 of "<deployment>\0<key>" in the documented namespace.
        expected = uuid.uuid5(uuid.UUID("6f1c2d0e-5b7a-4c1e-9a57-6c6f77627573"),
                              f"{deployment}\x00" + "2026-11-24")  # fmt: skip
        assert first.run_id == str(expected)
        # Deployments with their parameter schemas, for services in other languages.
        [listed] = await client.deployments()
        assert listed["name"] == deployment and "n" in listed["parameter_schema"]["properties"]
        queues = await client.queues()
    assert queues[0].waiting == 2  # one request per run, not per submission
    assert len(stack.with_store(lambda s: s.list_flow_runs())) == 2


async def test_the_wire_protocol_alone_drives_a_run(stack: Stack) -> None:
    """Only nats-py calls, written from docs/protocol.md: no flowbus client code."""
    deployment = stack.deploy("quick")
    stack.start_agent("agent-1")
    nc = await nats.connect(stack.url)
    try:
        reply = await nc.request(
            "flowbus.api.submit",
            json.dumps({"deployment": deployment, "parameters": {"n": 3}}).encode(),
            timeout=10,
        )
        answer = json.loads(reply.data)
        assert answer["ok"] is True and answer["created"] is True
        run_id = answer["run_id"]

        js = nc.jetstream()
        subscription = await js.subscribe(
            f"flowbus.event.{run_id}.flow_run.>",
            stream="FLOWBUS_EVENTS",
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        states = []
        while not states or states[-1][0] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            message = await subscription.next_msg(timeout=30)
            event = json.loads(message.data)
            states.append((event["state"]["type"], event["state"]["name"], event.get("result")))
        assert [name for _, name, _ in states] == ["Scheduled", "Pending", "Running", "Completed"]
        assert states[-1][2] == "6"
        # Or one request, answered once the store holds the run's end.
        reply = await nc.request("flowbus.api.wait", json.dumps({"run_id": run_id}).encode(), 10)
        end = json.loads(reply.data)
        assert (end["final"], end["state_name"], end["result"]) == (True, "Completed", "6")
        reply = await nc.request("flowbus.api.wait", b'{"run_id": "nope"}', timeout=10)
        assert json.loads(reply.data)["error"]["code"] == "not_found"
        reply = await nc.request("flowbus.api.wait", b'{"run_id": "x", "wait": 3600}', 10)
        assert json.loads(reply.data)["error"]["code"] == "bad_request"

        bad = await nc.request("flowbus.api.submit", b'{"deployment": 3}', timeout=10)
        error = json.loads(bad.data)
        assert error["ok"] is False and error["error"]["code"] == "bad_request"

        # Every reply says whether it is one: a queue update's too.
        update = {"name": "default", "priority": 5}
        reply = await nc.request("flowbus.api.queue.update", json.dumps(update).encode(), 10)
        assert json.loads(reply.data)["ok"] is True
        reply = await nc.request("flowbus.api.deployments", b"", timeout=10)
        assert [d["name"] for d in json.loads(reply.data)["deployments"]] == [deployment]
    finally:
        await nc.close()


async def test_cancel_a_queued_run_and_a_running_one(stack: Stack) -> None:
    slow = stack.deploy("sleepy")
    async with stack.client() as client:
        queued = await client.submit(slow, {"seconds": 30})
        assert await client.cancel(queued.run_id) == "Cancelled"
        assert stack.states(queued.run_id) == ["Scheduled", "Cancelled"]

        stack.start_agent("agent-1")  # it takes the cancelled run's request and drops it
        running = await client.submit(slow, {"seconds": 30})
        wait_until(lambda: "Running" in stack.states(running.run_id), what="the run to start")
        assert await client.cancel(running.run_id) == "Cancelling"
        # Long before the flow's 30 s sleep would end (no wall-clock bound: CI shares cores).
        final = await client.wait(running.run_id, timeout=25)
        assert final.name == "Cancelled"
        assert await client.cancel(running.run_id) == "Cancelled"  # again: nothing to do
    assert stack.final_states(running.run_id) == [
        "Scheduled", "Pending", "Running", "Cancelling", "Cancelled"
    ]  # fmt: skip
    assert stack.states(queued.run_id) == ["Scheduled", "Cancelled"]


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def descendants_of(pid: int) -> set[int]:
    """Its children, theirs, and so on (a run's process is forked by the agent's warm server)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children_of(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


async def test_cancel_stops_a_process_isolated_run_blocked_in_a_call(stack: Stack) -> None:
    """A flow blocked in time.sleep ignores the cancel it is asked for; its process is killed
    after a grace and the run recorded Cancelled, once."""
    blocking = stack.deploy("blocking")
    agent = stack.start_agent("agent-1", "--isolation", "process")
    idle = descendants_of(agent.pid)  # the warm server the runs' processes fork from
    async with stack.client() as client:
        run = await client.submit(blocking, {"seconds": 300})
        wait_until(lambda: "Running" in stack.states(run.run_id), 60, "the run to start")
        assert descendants_of(agent.pid) - idle  # the run's process
        started = time.monotonic()
        assert await client.cancel(run.run_id) == "Cancelling"
        final = await client.wait(run.run_id, timeout=60)  # not the flow's 300 s
        took = time.monotonic() - started
        assert final.name == "Cancelled"
    states = stack.final_states(run.run_id)
    assert states[-2:] == ["Cancelling", "Cancelled"] and states.count("Cancelled") == 1, states
    wait_until(lambda: descendants_of(agent.pid) <= idle, 30, "the run's process to be gone")
    print(f"a blocked process-isolated run cancelled in {took:.2f} s")


async def test_a_thread_blocked_past_the_cancel_deadline_is_abandoned(tmp_path: Path) -> None:
    """Thread isolation cannot stop a call; at the deadline the run is recorded Cancelled, its
    thread is listed abandoned and takes the agent's one slot until it returns."""
    stack = Stack(tmp_path, env={"FLOWBUS_CANCEL_DEADLINE_SECONDS": "1"})
    try:
        stack.start_orchestrator()
        blocking, quick = stack.deploy("blocking"), stack.deploy("quick")
        stack.start_agent("agent-1", "--concurrency", "1")
        async with stack.client() as client:
            stuck = await client.submit(blocking, {"seconds": 10})
            wait_until(lambda: "Running" in stack.states(stuck.run_id), 60, "the run to start")
            assert await client.cancel(stuck.run_id) == "Cancelling"
            assert (await client.wait(stuck.run_id, timeout=30)).name == "Cancelled"

            async def listed(abandoned: list[str]) -> None:  # by one of the next heartbeats
                for _ in range(600):
                    [agent] = await client.agents()
                    if not agent.runs and agent.abandoned == abandoned:
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError(f"the agent lists {agent.runs}, abandoned {agent.abandoned}")

            await listed([stuck.run_id])
            after = await client.submit(quick)  # no room until the thread returns
            assert stack.states(after.run_id) == ["Scheduled"]
            assert (await client.wait(after.run_id, timeout=60)).completed
            await listed([])
        states = stack.final_states(stuck.run_id)
        assert states[-2:] == ["Cancelling", "Cancelled"] and states.count("Cancelled") == 1, states
        # Its claim came only after the abandoned thread had returned.
        claims = {run: next(e.occurred for e in stack.stream(run) if e.data.get("attempt"))
                  for run in (stuck.run_id, after.run_id)}  # fmt: skip
        assert claims[after.run_id] > claims[stuck.run_id]
        assert (
            "blocked 1 s later, thread abandoned"
            in stack.stream(stuck.run_id)[-1].data["state"]["message"]
        )
    finally:
        stack.close()


async def test_a_failed_run_retried_on_request_runs_again(stack: Stack, tmp_path: Path) -> None:
    """``flowbus runs retry`` (and the API's POST .../retry) queue a Failed run again as a new
    attempt of the same run; a run that is not over is refused."""
    deployment = stack.deploy("fails_first")
    stack.start_agent("agent-1")
    async with stack.client() as client:
        run = await client.submit(deployment, {"marker": str(tmp_path / "marker")})
        assert (await client.wait(run.run_id, timeout=60)).name == "Failed"
        stack.final_states(run.run_id)
        retried = stack.cli("runs", "retry", run.run_id[:8], "--json")
        assert json.loads(retried.stdout) == {"run_id": run.run_id, "state": "AwaitingRetry"}
        final = await client.wait(run.run_id, timeout=60)
        assert final.completed and final.result == "'second time lucky'"
        with pytest.raises(ClientError) as refused:
            await client.retry(run.run_id)
        assert refused.value.code == "not_retryable"
    import httpx

    response = httpx.post(f"{stack.api_url}/api/v1/runs/{run.run_id}/retry")
    assert response.status_code == 409 and "Completed" in response.text, response.text
    states = stack.final_states(run.run_id)
    assert states == ["Scheduled", "Pending", "Running", "Failed", "AwaitingRetry", "Pending",
                      "Running", "Completed"]  # fmt: skip
    attempts = [e.data["attempt"] for e in stack.stream(run.run_id) if e.data.get("attempt")]
    assert attempts == [1, 2]


async def test_a_missing_entrypoint_fails_the_run_not_the_agent(
    stack: Stack, tmp_path: Path
) -> None:
    source = tmp_path / "gone.py"
    source.write_text((FLOWS_DIR / "flows.py").read_text())
    flow = load_flow(f"{source}:quick")
    spec = build_deployment(flow, "gone", f"{source}:quick", tmp_path)

    async def save(store: SqliteEventStore) -> str:
        return (await save_deployment(store, spec)).name

    deployment = stack.with_store(save)
    source.unlink()
    good = stack.deploy("quick")
    stack.start_agent("agent-1")
    async with stack.client() as client:
        broken = await client.submit(deployment)
        final = await client.wait(broken.run_id, timeout=30)
        assert final.name == "Failed"
        assert "gone.py does not exist" in (final.message or "")
        fine = await client.submit(good)
        assert (await client.wait(fine.run_id, timeout=30)).completed


async def test_a_sync_flow_runs_in_its_own_thread_and_others_go_on(stack: Stack) -> None:
    blocking, quick = stack.deploy("blocking"), stack.deploy("quick")
    stack.start_agent("agent-1", "--concurrency", "4")
    async with stack.client() as client:
        long = await client.submit(blocking, {"seconds": 3})
        wait_until(lambda: "Running" in stack.states(long.run_id), what="the blocking run")
        short = await client.submit(quick)
        assert (await client.wait(short.run_id, timeout=2.5)).completed  # not behind the block
        assert (await client.wait(long.run_id, timeout=30)).completed


async def test_process_isolation_runs_flows_and_reports_a_dead_child(stack: Stack) -> None:
    """A run whose process dies is recovered within its deployment's crash budget (here 1),
    then ends Crashed."""
    quick, dies = stack.deploy("quick"), stack.deploy("dies", crash_retries=1)
    stack.start_agent("agent-1", "--isolation", "process")
    async with stack.client() as client:
        fine = await client.submit(quick, {"n": 5})
        assert (await client.wait(fine.run_id, timeout=60)).result == "20"
        dead = await client.submit(dies)
        final = await client.wait(dead.run_id, timeout=60)
        assert final.name == "Crashed"
        assert "process died" in (final.message or "")
    events = stack.stream(dead.run_id)
    assert sum(1 for e in events if e.data.get("attempt")) == 2  # the first and one recovery
    states = [e.data["state"] for e in events if e.type == "flow_run.state"]
    [recovery] = [s for s in states if s["name"] == "AwaitingRetry"]
    assert "recovering: queued again (crash 1 of 1)" in recovery["message"]


async def test_queue_priority_pause_and_limit(stack: Stack) -> None:
    low, high = stack.deploy("quick", "low", "low"), stack.deploy("quick", "high", "high")
    async with stack.client() as client:
        await client.update_queue("high", priority=10)
        await client.update_queue("low", priority=1)
        runs = [await client.submit(low) for _ in range(3)] + [
            await client.submit(high) for _ in range(3)
        ]
        stack.start_agent("agent-1", "-q", "low", "-q", "high", "--concurrency", "1")
        for run in runs:
            await client.wait(run.run_id, timeout=30)

        def claimed_at(run_id: str) -> int:
            return next(e.position for e in stack.stream(run_id) if e.data.get("attempt"))

        order = sorted(runs, key=lambda r: claimed_at(r.run_id))
        assert [r.queue for r in order] == ["high"] * 3 + ["low"] * 3

        await client.update_queue("low", paused=True)
        paused = await client.submit(low)
        await asyncio.sleep(1.5)
        assert stack.states(paused.run_id) == ["Scheduled"]
        info = await client.update_queue("low", paused=False)
        assert not info.settings.paused
        assert (await client.wait(paused.run_id, timeout=30)).completed

        limited = await client.update_queue("high", concurrency_limit=1)
        assert limited.settings.concurrency_limit == 1
        agents = await client.agents()
    assert [a.name for a in agents] == ["agent-1"] and agents[0].alive


async def test_runs_wait_as_late_when_no_agent_takes_them(tmp_path: Path) -> None:
    stack = Stack(tmp_path, env={"FLOWBUS_LATE_AFTER_SECONDS": "0.5"})
    try:
        stack.start_orchestrator()
        deployment = stack.deploy("quick")
        async with stack.client() as client:
            run = await client.submit(deployment)
            wait_until(lambda: stack.states(run.run_id)[-1] == "Late", what="Late")
            stack.start_agent("agent-1")
            assert (await client.wait(run.run_id, timeout=30)).completed
        assert stack.final_states(run.run_id) == [
            "Scheduled", "Late", "Pending", "Running", "Completed"
        ]  # fmt: skip
    finally:
        stack.close()


def most_running_at_once(stack: Stack, run_ids: list[str]) -> int:
    """The most runs that were Running at the same moment, from their recorded states."""
    changes = []
    for run_id in run_ids:
        for event in stack.stream(run_id):
            state = event.data.get("state")
            if event.type == "flow_run.state" and state["name"] == "Running":
                changes.append((state["timestamp"], 1))
            elif event.type == "flow_run.state" and state["type"] in FINAL_TYPES:
                changes.append((state["timestamp"], -1))
    running = most = 0
    for _, change in sorted(changes, key=lambda c: (c[0], c[1])):
        running += change
        most = max(most, running)
    return most


FINAL_TYPES = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


async def test_an_agent_never_runs_more_than_its_concurrency(stack: Stack) -> None:
    deployment = stack.deploy("sleepy")
    stack.start_agent("agent-1", "--concurrency", "2")
    async with stack.client() as client:
        runs = [await client.submit(deployment, {"seconds": 0.5}) for _ in range(6)]
        for run in runs:
            assert (await client.wait(run.run_id, timeout=30)).completed
    assert most_running_at_once(stack, [r.run_id for r in runs]) == 2


async def test_a_queue_limit_holds_across_agents(stack: Stack) -> None:
    deployment = stack.deploy("sleepy")
    async with stack.client() as client:
        await client.update_queue("default", concurrency_limit=1)
        for name in ("agent-a", "agent-b"):
            stack.start_agent(name, "--concurrency", "5")
        runs = [await client.submit(deployment, {"seconds": 0.5}) for _ in range(4)]
        for run in runs:
            assert (await client.wait(run.run_id, timeout=60)).completed
    assert most_running_at_once(stack, [r.run_id for r in runs]) == 1


async def test_many_waits_open_no_consumer(stack: Stack) -> None:
    """A service waiting on 60 runs opens no consumer (each wait is a request the orchestrator
    answers from its commits), not 60; a run that finished before its wait began is found at
    once; a run failing is reported as it ended."""
    from flowbus.broker import subjects

    deployment = stack.deploy("quick")
    failing = stack.deploy("fails")
    stack.start_agent("agent-1", "-c", "20")
    async with stack.client() as client:
        js = client.nats.jetstream()
        early = await client.submit(deployment, {"n": 1})
        wait_until(lambda: stack.states(early.run_id)[-1:] == ["Completed"], what="a first run")
        consumers = len(await js.consumers_info(subjects.EVENTS_STREAM))
        runs = await asyncio.gather(*(client.submit(deployment, {"n": i}) for i in range(60)))
        bad = await client.submit(failing)
        finals = await asyncio.gather(
            *(client.wait(run.run_id, timeout=60) for run in [early, *runs, bad])
        )
        assert all(final.completed for final in finals[:-1])
        assert finals[-1].name == "Failed"
        assert [final.result for final in finals[1:-1]] == [str(i * (i - 1)) for i in range(60)]
        assert len(await js.consumers_info(subjects.EVENTS_STREAM)) == consumers
        # With no orchestrator to answer, a wait goes by the events stream (one subscription
        # for all waits): the run's final state event is all there is.
        assert stack.orchestrator is not None
        stack.orchestrator.stop()
        finals = await asyncio.gather(*(client.wait(run.run_id, timeout=60) for run in runs))
        assert [final.result for final in finals] == [str(i * (i - 1)) for i in range(60)]
        assert len(await js.consumers_info(subjects.EVENTS_STREAM)) == consumers + 1


async def test_every_run_awaited_one_after_another_is_taken_on_its_doorbell(stack: Stack) -> None:
    """200 runs submitted and awaited one at a time, by an agent that looks for requests on
    its own only every ten minutes: each is taken when its request rings, even when the ring
    reaches the agent before the stream hands the request to a pull (which, with a one-second
    tick, made about one run in twenty wait a second: the p99 of sequential calls)."""
    deployment = stack.deploy("quick")
    stack.start_agent("agent-1", env={"FLOWBUS_AGENT_TICK_SECONDS": "600"})
    async with stack.client() as client:
        for _ in range(200):
            run = await client.submit(deployment, {"n": 1})
            assert (await client.wait(run.run_id, timeout=60)).completed
