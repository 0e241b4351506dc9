"""``flowbus up`` hands a new run straight to its idle agent: made and claimed in the
submission's own commit, no request in the queue. What must not change: a busy agent, a
paused queue, a queue or deployment limit and a due time still go through the queue, in
order; a run handed over and then handed back (the agent stopping) is queued again and runs
elsewhere."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import nats
import orjson
import pytest
from nats.aio.msg import Msg

from flowbus.broker import subjects
from flowbus.client import Client
from tests.integration.stack import Daemon, Stack, until

pytestmark = pytest.mark.asyncio


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path)
    try:
        yield stack
    finally:
        stack.close()


def start_up(stack: Stack, *args: str) -> Daemon:
    """``flowbus up`` on the stack's nats-server and store: its orchestrator and agent in one
    process, as a new user starts them."""
    up = stack.start_process("up", "up", "--api-port", "0", *args)
    up.wait_for("flowbus is up")
    return up


async def requests_published(stack: Stack) -> int:
    """How many run requests were ever published to the stack's queues (the runs stream's
    last sequence number: a work queue forgets the requests themselves once acked)."""
    client = await nats.connect(stack.url)
    try:
        info = await client.jetstream().stream_info(subjects.RUNS_STREAM)
        return int(info.state.last_seq)
    finally:
        await client.close()


async def until_idle(stack: Stack, client: Client) -> int:
    """Once the agent takes runs handed over (it has looked at its queues and found them
    drained: a run of a probe deployment goes to it without a request), the requests published
    so far."""
    probe = stack.deploy("quick", "probe")
    for _ in range(120):
        before = await requests_published(stack)
        run = await client.submit(probe, {"n": 0})
        assert (await client.wait(run.run_id, timeout=60)).completed
        if await requests_published(stack) == before:
            return before
        await asyncio.sleep(0.5)
    raise AssertionError("no run was ever handed over")


def claimed_by(stack: Stack, run_id: str) -> list[str]:
    """The agents of the run's claims, in order."""
    return [e.data["agent"] for e in stack.stream(run_id) if e.data.get("attempt")]


@pytest.mark.parametrize("isolation", ["thread", "process"])
async def test_an_idle_agent_gets_new_runs_in_the_submissions_own_commit(
    stack: Stack, isolation: str
) -> None:
    deployment = stack.deploy("quick")
    up = start_up(stack, "--isolation", isolation)
    async with stack.client() as client:
        base = await until_idle(stack, client)
        runs = []
        for x in range(5):
            run = await client.submit(deployment, {"n": x})
            final = await client.wait(run.run_id, timeout=30)
            assert final.completed and final.result == str(x * (x - 1))
            runs.append(run.run_id)
    assert await requests_published(stack) == base  # none went through the queue
    for run_id in runs:
        assert stack.states(run_id) == ["Scheduled", "Pending", "Running", "Completed"]
        assert stack.stream(run_id)[1].data["attempt"] == 1
    assert up.stop() == 0
    handed = re.search(r"handed_over=(\d+)", up.output())
    assert handed is not None and int(handed.group(1)) >= 5 + 1, up.output()  # and the probe


async def test_a_busy_agent_paused_queue_and_limits_leave_runs_to_the_queue(
    stack: Stack,
) -> None:
    sleepy = stack.deploy("blocking", "sleepy")
    quick = stack.deploy("quick", "quick")
    stack.cli("deploy", "flows.py:quick", "-n", "limited", "--concurrency-limit", "1")
    up = start_up(stack, "--concurrency", "1")
    async with stack.client() as client:
        base = await until_idle(stack, client)
        first = await client.submit(sleepy, {"seconds": 1.0})
        waiting = await client.submit(quick, {"n": 1})  # the one slot is taken
        assert (await client.wait(first.run_id, timeout=30)).completed
        assert (await client.wait(waiting.run_id, timeout=30)).completed
        assert await requests_published(stack) == base + 1  # the one that waited

        await client.update_queue("default", paused=True)
        await asyncio.sleep(0.5)  # the agent hears of it (a KV watch)
        paused = await client.submit(quick, {"n": 2})
        await asyncio.sleep(1.0)
        assert stack.states(paused.run_id) == ["Scheduled"]
        await client.update_queue("default", paused=False)
        assert (await client.wait(paused.run_id, timeout=30)).completed
        assert await requests_published(stack) == base + 2

        limited = await client.submit("quick/limited", {"n": 3})
        assert (await client.wait(limited.run_id, timeout=30)).completed
        assert await requests_published(stack) == base + 3
    assert up.stop() == 0


async def test_a_handed_over_run_handed_back_at_stop_runs_elsewhere(stack: Stack) -> None:
    deployment = stack.deploy("sleepy_once", "sleepy")
    up = start_up(stack)
    async with stack.client() as client:
        base = await until_idle(stack, client)
        run = await client.submit(deployment, {"seconds": 3.0})
        await asyncio.sleep(0.5)  # running
        assert await requests_published(stack) == base
        up.signal(signal.SIGTERM)
        up.signal(signal.SIGTERM)  # the second one hands its runs back at once
        assert up.process.wait(60) == 0
        stack.start_orchestrator()
        stack.start_agent("second")
        final = await client.wait(run.run_id, timeout=60)
    assert final.completed, final
    states = stack.states(run.run_id)
    assert states[:2] == ["Scheduled", "Pending"] and states[-1] == "Completed"
    assert states.count("Scheduled") == 2, states  # handed back once, then claimed again
    assert claimed_by(stack, run.run_id)[-1] == "second"
    assert await requests_published(stack) == base + 1  # published when it was handed back


async def test_a_subscriber_sees_each_run_of_flowbus_up_in_order(stack: Stack) -> None:
    """Its events are recorded in the process and then announced: on the stream, a run's
    events are in its own order (the claim before the agent's first state)."""
    deployment = stack.deploy("quick")
    start_up(stack)
    client = await nats.connect(stack.url)
    seen: dict[str, list[int]] = {}

    async def take(msg: Msg) -> None:
        run_id, seq = msg.subject.split(".")[2], orjson.loads(msg.data)["seq"]
        seen.setdefault(run_id, []).append(seq)

    try:
        await client.subscribe("flowbus.event.>", cb=take)
        async with stack.client() as flowbus:
            await until_idle(stack, flowbus)
            runs = [await flowbus.submit(deployment, {"n": 3}) for _ in range(20)]
            for run in runs:
                assert (await flowbus.wait(run.run_id, timeout=30)).completed

        async def announced() -> bool:
            return all(len(seen.get(r.run_id, ())) == len(stack.stream(r.run_id)) for r in runs)

        await until(announced, timeout=30, what="every event announced")
    finally:
        await client.close()
    for run in runs:
        assert seen[run.run_id] == list(range(1, len(seen[run.run_id]) + 1)), seen[run.run_id]


async def test_a_locked_store_delays_a_runs_events_and_loses_none(stack: Stack) -> None:
    """The lane's commit is refused (the store locked past its busy timeout): the events go
    through the stream instead, and are recorded once the store is free, each once."""
    deployment = stack.deploy("sleepy_once", "sleepy")
    up = start_up(stack)
    async with stack.client() as client:
        await until_idle(stack, client)
        run = await client.submit(deployment, {"seconds": 1.0})
        blocker = sqlite3.connect(stack.home / "flowbus.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the flow starts and ends meanwhile
        await asyncio.sleep(8.0)  # past the store's busy timeout (5 s)
        blocker.execute("ROLLBACK")
        blocker.close()
        final = await client.wait(run.run_id, timeout=60)
    assert final.completed, final
    seqs = [e.seq for e in stack.stream(run.run_id)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert stack.states(run.run_id) == ["Scheduled", "Pending", "Running", "Completed"]
    assert "publishing them instead" in up.output()  # the lane's commit was refused
