"""The engine continues a run created elsewhere, and ends it as told when interrupted."""

from __future__ import annotations

import asyncio

from flowbus import flow
from flowbus.engine.flow_engine import ClaimedRun, FlowRunEngine
from flowbus.engine.sinks import ListSink
from flowbus.engine.states import Cancelled, Cancelling, Pending, Scheduled

RUN = "01a20000-0000-7000-8000-0000000000aa"


@flow
async def wait_long(seconds: float = 30) -> str:
    await asyncio.sleep(seconds)
    return "slept"


@flow
def add(a: int, b: int) -> int:
    return a + b


def claimed(seq: int = 2) -> ClaimedRun:
    return ClaimedRun(RUN, "brave-otter", seq, Pending(), ["t"])


def states(sink: ListSink) -> list[tuple[int, str]]:
    return [(r.seq, r.data["state"]["name"]) for r in sink.records if r.type == "flow_run.state"]


async def test_a_claimed_run_goes_on_from_the_claims_sequence_number() -> None:
    sink = ListSink()
    engine = FlowRunEngine(add, {"a": 1, "b": 2}, claimed=claimed(), sink=sink)
    state = await engine.run()
    assert state.result() == 3
    assert states(sink) == [(3, "Running"), (4, "Completed")]
    assert not [r for r in sink.records if r.type == "flow_run.created"]
    assert {r.stream_id for r in sink.records} == {RUN}


async def test_interrupted_with_cancel_the_run_ends_cancelled() -> None:
    sink = ListSink()
    engine = FlowRunEngine(wait_long, {"seconds": 30}, claimed=claimed(), sink=sink)
    task = asyncio.ensure_future(engine.run())
    await asyncio.sleep(0.05)
    assert engine.interrupt(Cancelled(message="on request"), Cancelling())
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert states(sink) == [(3, "Running"), (4, "Cancelling"), (5, "Cancelled")]
    assert not engine.interrupt(Cancelled())  # over: a second interrupt changes nothing


async def test_handed_back_the_run_is_scheduled_again() -> None:
    sink = ListSink()
    engine = FlowRunEngine(wait_long, {"seconds": 30}, claimed=claimed(), sink=sink)
    task = asyncio.ensure_future(engine.run())
    await asyncio.sleep(0.05)
    engine.interrupt(Scheduled(message="handed back"))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert states(sink)[-1] == (4, "Scheduled")
