"""The invariants of ARCHITECTURE.md, each against real daemons and a real nats-server:
no acknowledged run is lost, none runs to completion twice, bad input never crashes a daemon."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nats
import pytest
from nats.js.errors import NotFoundError

from flowbus.broker import EmbeddedNatsServer, subjects
from flowbus.client import ClientError

from .stack import Stack, wait_until

FINAL = {"Completed", "Failed", "Cancelled", "Crashed"}


@pytest.fixture
def stack(stack: Stack) -> Stack:
    """The shared stack, with an orchestrator."""
    stack.start_orchestrator()
    return stack


def holder(stack: Stack, run_id: str) -> str:
    """The agent named by the run's latest claim."""
    claims = [e.data["agent"] for e in stack.stream(run_id) if e.data.get("attempt")]
    return claims[-1]


def running(stack: Stack, run_id: str) -> bool:
    return stack.states(run_id)[-1:] == ["Running"]


def completed_count(stack: Stack, run_id: str) -> int:
    return stack.states(run_id).count("Completed")


async def no_request_left(stack: Stack, queue: str = "default") -> bool:
    async with stack.client() as client:
        infos = {q.settings.name: q for q in await client.queues()}
    info = infos[queue]
    return info.waiting == 0 and info.in_flight == 0


async def test_kill_9_an_agent_mid_run_another_finishes_it_once(stack: Stack) -> None:
    deployment = stack.deploy("sleepy")  # retries=1: a crashed run is queued again
    agents = {name: stack.start_agent(name) for name in ("agent-a", "agent-b")}
    async with stack.client() as client:
        run = await client.submit(deployment, {"seconds": 3})
        wait_until(lambda: running(stack, run.run_id), what="the run to start")
        first = holder(stack, run.run_id)
        agents[first].signal(signal.SIGKILL)
        final = await client.wait(run.run_id, timeout=60)
    assert final.completed
    states = stack.final_states(run.run_id)
    assert states == [
        "Scheduled", "Pending", "Running", "Crashed", "AwaitingRetry", "Pending", "Running",
        "Completed",
    ]  # fmt: skip
    assert holder(stack, run.run_id) != first
    # No orphan lease: the dead agent's request came back, was refused, and is gone.
    deadline = asyncio.get_running_loop().time() + 20
    while not await no_request_left(stack):
        assert asyncio.get_running_loop().time() < deadline, "a run request was left behind"
        await asyncio.sleep(0.2)
    async with stack.client() as client:
        for _ in range(50):  # as of the survivor's next heartbeat
            survivors = [a for a in await client.agents() if a.alive]
            if not survivors[0].runs:
                break
            await asyncio.sleep(0.1)
    assert [(a.name, a.runs) for a in survivors] == [(holder(stack, run.run_id), [])]


@pytest.mark.parametrize("crash_retries", [3, 0])
async def test_a_run_whose_agent_died_is_recovered_within_its_budget(
    stack: Stack, crash_retries: int
) -> None:
    """A flow without retries of its own: the deployment's crash budget queues the run again
    when its agent is killed -9 (3, the default), or lets it end Crashed (0, as in Prefect)."""
    deployment = stack.deploy("sleepy_once", f"budget-{crash_retries}", crash_retries=crash_retries)
    agents = {name: stack.start_agent(name) for name in ("agent-a", "agent-b")}
    async with stack.client() as client:
        run = await client.submit(deployment, {"seconds": 3})
        wait_until(lambda: running(stack, run.run_id), what="the run to start")
        agents[holder(stack, run.run_id)].signal(signal.SIGKILL)
        final = await client.wait(run.run_id, timeout=60)
    states = stack.final_states(run.run_id)
    if crash_retries:
        assert final.completed
        assert states == ["Scheduled", "Pending", "Running", "Crashed", "AwaitingRetry",
                          "Pending", "Running", "Completed"]  # fmt: skip
    else:
        assert final.name == "Crashed"
        assert states == ["Scheduled", "Pending", "Running", "Crashed"]


async def test_a_zombie_agents_late_events_and_ack_are_fenced_off(stack: Stack) -> None:
    deployment = stack.deploy("sleepy")
    agents = {name: stack.start_agent(name) for name in ("agent-a", "agent-b")}
    async with stack.client() as client:
        run = await client.submit(deployment, {"seconds": 4})
        wait_until(lambda: running(stack, run.run_id), what="the run to start")
        zombie = holder(stack, run.run_id)
        agents[zombie].signal(signal.SIGSTOP)  # past its lease (2 s) and its ack wait (3 s)
        wait_until(lambda: completed_count(stack, run.run_id) == 1, 30, "the re-run")
        agents[zombie].signal(signal.SIGCONT)  # it wakes, finishes its sleep, and speaks up
        await asyncio.sleep(3)
    assert completed_count(stack, run.run_id) == 1
    states = stack.states(run.run_id)
    assert states[-1] == "Completed" and states.count("Pending") == 2
    assert holder(stack, run.run_id) != zombie
    zombie_log = agents[zombie].output()
    assert "lost a run to another attempt" in zombie_log or await fenced_events(stack) > 0
    assert stack.with_store(lambda s: s.verify_projections()) == []


async def fenced_events(stack: Stack) -> int:
    nc = await nats.connect(stack.url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("FLOWBUS_DEAD")
        fenced = 0
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg("FLOWBUS_DEAD", seq)
            if (message.headers or {}).get("Flowbus-Error", "").startswith("fenced"):
                fenced += 1
        return fenced
    finally:
        await nc.close()


async def test_nats_restart_with_100_runs_in_flight_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    stack = Stack(tmp_path)
    try:
        stack.start_orchestrator()
        deployment = stack.deploy("sleepy")
        stack.start_agent("agent-1", "--concurrency", "100")
        async with stack.client() as client:
            runs = await asyncio.gather(
                *(client.submit(deployment, {"seconds": 2}) for _ in range(100))
            )
        ids = [r.run_id for r in runs]
        wait_until(lambda: sum(running(stack, i) for i in ids) >= 50, 30, "runs to be in flight")
        port, data = stack.server.port, stack.server.store_dir
        stack.server.stop()
        stack.server = EmbeddedNatsServer(data, port=port)
        stack.server.start()

        def all_final() -> bool:
            return all(stack.states(i)[-1:] and stack.states(i)[-1] in FINAL for i in ids)

        wait_until(all_final, 90, "every run to end")
        for run_id in ids:
            states = stack.states(run_id)
            assert states.count("Completed") == 1, states
            assert states[-1] == "Completed", states
        assert stack.with_store(lambda s: s.verify_projections()) == []
    finally:
        stack.close()


async def test_orchestrator_killed_between_its_write_and_its_publish(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    try:
        crashing = stack.start_orchestrator({"FLOWBUS_TEST_CRASH_AT": "after-schedule-write"})
        deployment = stack.deploy("quick")
        stack.start_agent("agent-1")
        async with stack.client() as client:
            client.timeout = 3
            with pytest.raises(ClientError):
                await client.submit(deployment)
        assert crashing.process.wait(10) == 70
        [run] = stack.with_store(lambda s: s.list_flow_runs())
        assert run.state_name == "Scheduled"  # recorded, never published

        stack.start_orchestrator()
        async with stack.client() as client:
            final = await client.wait(run.id, timeout=30)
        assert final.completed
        assert stack.final_states(run.id) == ["Scheduled", "Pending", "Running", "Completed"]
    finally:
        stack.close()


async def test_a_claim_whose_answer_was_lost_is_granted_again(tmp_path: Path) -> None:
    """The orchestrator records a claim and dies before answering it: the agent, its request
    redelivered, claims again and gets the same grant. The run starts then, without waiting
    for its lease to run out and without a Crashed state."""
    stack = Stack(tmp_path, env={"FLOWBUS_LEASE_SECONDS": "60"})
    try:
        crashing = stack.start_orchestrator({"FLOWBUS_TEST_CRASH_AT": "after-claim-write"})
        deployment = stack.deploy("quick")
        async with stack.client() as client:
            run = await client.submit(deployment)
        stack.start_agent("agent-1")
        assert crashing.process.wait(30) == 70  # the claim is recorded, its answer never sent
        wait_until(lambda: stack.states(run.run_id)[-1:] == ["Pending"], what="the claim")
        stack.start_orchestrator()
        async with stack.client() as client:
            final = await client.wait(run.run_id, timeout=60)
        assert final.completed
        assert stack.final_states(run.run_id) == ["Scheduled", "Pending", "Running", "Completed"]
        claims = [e for e in stack.stream(run.run_id) if e.data.get("attempt")]
        assert [e.data["attempt"] for e in claims] == [1]
    finally:
        stack.close()


async def test_a_run_whose_holder_never_heard_its_grant_is_not_taken_from_it(
    tmp_path: Path,
) -> None:
    """The claim of agent-1 is recorded and never answered; the request comes back to
    agent-2 first, which is refused "starting" and puts it back instead of acking it away.
    agent-1 gets it then and is granted its claim again: no lease runs out, nothing Crashes.
    (The queue audit, which would publish a lost request again, is kept out of the way.)"""
    env = {"FLOWBUS_LEASE_SECONDS": "120", "FLOWBUS_QUEUE_AUDIT_INTERVAL": "600"}
    stack = Stack(tmp_path, env=env)
    try:
        crashing = stack.start_orchestrator({"FLOWBUS_TEST_CRASH_AT": "after-claim-write"})
        deployment = stack.deploy("quick")
        async with stack.client() as client:
            run = await client.submit(deployment)
        first = stack.start_agent("agent-1")
        assert crashing.process.wait(30) == 70  # the claim is recorded, its answer never sent
        wait_until(lambda: stack.states(run.run_id)[-1:] == ["Pending"], what="the claim")
        first.kill()  # the request goes back to the queue when its ack wait runs out
        stack.start_orchestrator()
        other = stack.start_agent("agent-2")
        other.wait_for("has not started it; putting it back", 60)
        stack.start_agent("agent-1")
        async with stack.client() as client:
            final = await client.wait(run.run_id, timeout=90)
        assert final.completed
        assert stack.final_states(run.run_id) == ["Scheduled", "Pending", "Running", "Completed"]
        claims = [e.data for e in stack.stream(run.run_id) if e.data.get("attempt")]
        assert [(c["agent"], c["attempt"]) for c in claims] == [("agent-1", 1)]
    finally:
        stack.close()


async def test_two_deliveries_of_a_run_taken_at_once_run_it_once(stack: Stack) -> None:
    """A second request for a run (a requeue's, or one published again) fetched in the same
    batch as the first: the agent claims once and runs the body once (the orchestrator answers
    a holder that claims again with its own grant, so the agent must not ask twice)."""
    ledger = stack.root / "ledger"
    deployment = stack.deploy("counted")
    async with stack.client() as client:
        run_id = (await client.submit(deployment, {"ledger": str(ledger)})).run_id
        wait_until(lambda: stack.states(run_id) == ["Scheduled"], what="the run to be queued")
        connection = await nats.connect(stack.url)
        try:
            again = b'{"run_id": "%s", "deployment": "%s", "dispatch": 1}' % (
                run_id.encode(), deployment.encode())  # fmt: skip
            await connection.jetstream().publish(subjects.run_subject("default"), again)
        finally:
            await connection.close()
        stack.start_agent("agent-a")  # both requests wait for it: one fetch takes both
        assert (await client.wait(run_id, timeout=60)).completed
    assert ledger.read_text().splitlines() == [run_id]
    assert stack.final_states(run_id) == ["Scheduled", "Pending", "Running", "Completed"]


async def test_two_agents_500_runs_each_completed_exactly_once(stack: Stack) -> None:
    deployment = stack.deploy("noop")
    for name in ("agent-a", "agent-b"):
        stack.start_agent(name, "--concurrency", "25")
    async with stack.client() as client:
        runs = []
        for _batch in range(5):
            runs += await asyncio.gather(*(client.submit(deployment) for _ in range(100)))
    ids = {r.run_id for r in runs}
    assert len(ids) == 500

    def completed() -> int:
        views = stack.with_store(lambda s: s.list_flow_runs(state="COMPLETED", limit=1000))
        return len(views)

    wait_until(lambda: completed() == 500, 120, "500 completed runs")
    claims: Counter[str] = Counter()
    for run_id in ids:
        events = stack.stream(run_id)
        states = [e.data["state"]["name"] for e in events if e.type.startswith("flow_run")]
        assert states == ["Scheduled", "Pending", "Running", "Completed"], states
        claims[next(e.data["agent"] for e in events if e.data.get("attempt"))] += 1
    assert set(claims) == {"agent-a", "agent-b"}
    verify = subprocess.run(
        [sys.executable, "-m", "flowbus", "store", "verify"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def test_bad_messages_on_every_consumed_subject_are_dead_lettered(stack: Stack) -> None:
    deployment = stack.deploy("quick")
    stack.start_agent("agent-1")
    garbage = [b"not json", b'{"unexpected": true}', b"[" * 300_000]
    nc = await nats.connect(stack.url)
    try:
        js = nc.jetstream()
        for subject in (
            "flowbus.api.submit",
            "flowbus.api.cancel",
            "flowbus.api.queue.update",
            "flowbus.agent.claim",
            "flowbus.agent.heartbeat",
            "flowbus.agent.release",
            "flowbus.agent.agent-1.cancel",
        ):
            for payload in garbage:
                reply = json.loads((await nc.request(subject, payload, timeout=10)).data)
                assert reply["ok"] is False and reply["error"]["code"] == "bad_request", subject
        unknown_run = json.dumps({"run_id": "00000000-0000-0000-0000-000000000000",
                                  "deployment": deployment}).encode()  # fmt: skip
        oversized_request = json.dumps({"run_id": "x" * 300_000, "deployment": "d"}).encode()
        for payload in [*garbage[:2], unknown_run, oversized_request]:
            await js.publish("flowbus.run.default", payload)
        for payload in garbage[:2]:
            await js.publish("flowbus.event.x.flow_run.state", payload)

        async def dead_letters() -> Counter[str]:
            info = await js.stream_info("FLOWBUS_DEAD")
            sources: Counter[str] = Counter()
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                sources[(await js.get_msg("FLOWBUS_DEAD", seq)).subject] += 1
            return sources

        deadline = asyncio.get_running_loop().time() + 20
        while (found := await dead_letters()) != {
            "flowbus.dead.orchestrator": 18,  # 6 subjects x 3 (the agent answers its own)
            "flowbus.dead.agent": 4,
            "flowbus.dead.recorder": 2,
        }:
            assert asyncio.get_running_loop().time() < deadline, found
            await asyncio.sleep(0.2)
    finally:
        await nc.close()
    async with stack.client() as client:  # and everyone still serves
        run = await client.submit(deployment)
        assert (await client.wait(run.run_id, timeout=30)).completed


async def test_sigterm_lets_short_runs_finish_and_hands_long_ones_back(stack: Stack) -> None:
    deployment = stack.deploy("sleepy")
    leaving = stack.start_agent("agent-a", "--grace", "2")
    async with stack.client() as client:
        short = await client.submit(deployment, {"seconds": 1})
        # Long enough to outlast the 2 s grace however slow the machine; short enough not to
        # make the suite wait on it once more when it runs again.
        long = await client.submit(deployment, {"seconds": 10})
        wait_until(lambda: running(stack, short.run_id) and running(stack, long.run_id), 30,
                   "both runs to start")  # fmt: skip
        assert leaving.stop() == 0
        assert stack.states(short.run_id)[-1] == "Completed"
        # Handed back, not crashed (the agent's last event may reach the store after it exits).
        wait_until(lambda: stack.states(long.run_id)[-1] == "Scheduled", 30, "the hand-back")
        stack.start_agent("agent-b")
        final = await client.wait(long.run_id, timeout=60)
    assert final.completed and holder(stack, long.run_id) == "agent-b"
    assert stack.final_states(long.run_id) == [
        "Scheduled", "Pending", "Running", "Scheduled", "Pending", "Running", "Completed"
    ]  # fmt: skip


async def test_a_second_sigterm_hands_runs_back_at_once(stack: Stack) -> None:
    deployment = stack.deploy("sleepy")
    leaving = stack.start_agent("agent-a", "--grace", "60")
    async with stack.client() as client:
        run = await client.submit(deployment, {"seconds": 60})
        wait_until(lambda: running(stack, run.run_id), 30, "the run to start")
        leaving.signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        leaving.signal(signal.SIGTERM)
        assert leaving.process.wait(10) == 0
    wait_until(lambda: stack.states(run.run_id)[-1] == "Scheduled", 30, "the hand-back")


async def test_a_request_lost_from_its_queue_is_published_again(stack: Stack) -> None:
    """A run Scheduled with its request published, the request then gone from the queue (as
    when JetStream acks a publish as a duplicate of a message it lost): the leader's queue
    audit finds it missing and publishes it again, under a fresh message id (the old one
    would be dropped as a duplicate), and the run completes once."""
    stack.close()
    stack = Stack(stack.root / "audit", env={"FLOWBUS_QUEUE_AUDIT_INTERVAL": "1"})
    try:
        orchestrator = stack.start_orchestrator()
        deployment = stack.deploy("quick")
        async with stack.client() as client:
            run = await client.submit(deployment)
            js = client.nats.jetstream()
            subject = subjects.run_subject("default")
            message = None
            for _ in range(100):
                with contextlib.suppress(NotFoundError):
                    message = await js.get_msg(subjects.RUNS_STREAM, subject=subject,
                                               seq=1, next=True)  # fmt: skip
                    break
                await asyncio.sleep(0.1)
            assert message is not None and run.run_id.encode() in message.data
            await js.delete_msg(subjects.RUNS_STREAM, message.seq)
            orchestrator.wait_for("publishing it again", timeout=60)
            stack.start_agent("agent-1")
            final = await client.wait(run.run_id, timeout=60)
        assert final.completed
        states = [s for s in stack.final_states(run.run_id) if s != "Late"]
        assert states == ["Scheduled", "Pending", "Running", "Completed"]
    finally:
        stack.close()
