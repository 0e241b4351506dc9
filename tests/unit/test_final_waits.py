"""Waits for runs to end (agents/final_waits.py): answered once the store holds a final state,
from this process's commit without a read, or by a standby's reads when a run's head moves; a
Crashed counts only once it has lasted the settle time with nothing after it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from flowbus.agents.final_waits import FinalWaits, RunEnd, settled
from flowbus.engine.states import Completed, Crashed, Running, Scheduled, StateType
from flowbus.engine.store.memory import MemoryEventStore
from flowbus.engine.store.views import FlowRunView
from tests.integration.store_contract import RunBuilder


class CountedReads(MemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self.views = 0

    async def get_flow_run(self, run_id: str) -> FlowRunView | None:
        self.views += 1
        return await super().get_flow_run(run_id)


async def test_a_run_already_ended_is_answered_from_the_store() -> None:
    store = MemoryEventStore()
    run = RunBuilder()
    await store.append([run.created(), run.state(Running()), run.state(Completed(), "4")])
    waits = FinalWaits(store, tick=3600)
    end = await waits.wait(run.run_id, 60)
    assert end is not None and end.final and (end.state_name, end.result) == ("Completed", "4")
    assert await waits.wait("no-such-run", 1) is None
    await waits.close()


async def test_a_commit_here_answers_without_a_read() -> None:
    store = CountedReads()
    run = RunBuilder()
    await store.append([run.created(), run.state(Running())])
    waits = FinalWaits(store, tick=3600)  # no standby read in this test's time
    waiting = asyncio.create_task(waits.wait(run.run_id, 60))
    await asyncio.sleep(0.05)
    assert not waiting.done() and store.views == 1  # the view read when the wait came
    done = [run.state(Completed(), "4")]
    await store.append(done)
    waits.committed(done)
    end = await waiting
    assert (end is not None) and end.state_name == "Completed" and store.views == 1
    await waits.close()


async def test_a_standby_reads_a_run_when_its_head_moves() -> None:
    store = CountedReads()
    run = RunBuilder()
    await store.append([run.created(), run.state(Running())])
    waits = FinalWaits(store, tick=0.01)
    waiting = asyncio.create_task(waits.wait(run.run_id, 60))
    await asyncio.sleep(0.1)  # ten ticks, the head still: no more view reads
    assert not waiting.done() and store.views == 1
    await store.append([run.state(Completed(), "4")])  # committed by another process
    end = await waiting
    assert end is not None and end.state_name == "Completed" and store.views == 2
    await waits.close()


async def test_a_wait_that_runs_out_answers_the_state_so_far() -> None:
    store = MemoryEventStore()
    run = RunBuilder()
    await store.append([run.created(), run.state(Running())])
    waits = FinalWaits(store, tick=0.01)
    end = await waits.wait(run.run_id, 0.1)
    assert end is not None and not end.final and end.state_name == "Running"
    await waits.close()


async def test_a_crashed_run_queued_again_is_not_its_end() -> None:
    store = MemoryEventStore()
    run = RunBuilder()
    await store.append([run.created(), run.state(Running())])
    waits = FinalWaits(store, tick=0.01, settle=0.3)
    waiting = asyncio.create_task(waits.wait(run.run_id, 60))
    await asyncio.sleep(0.05)
    crashed = [run.state(Crashed())]
    await store.append(crashed)
    waits.committed(crashed)
    again = [run.state(Scheduled())]
    await store.append(again)
    waits.committed(again)
    await asyncio.sleep(0.5)  # past the settle time: the Crashed was not its end
    assert not waiting.done()
    last = [run.state(Crashed())]
    await store.append(last)
    waits.committed(last)
    end = await waiting  # once it lasted the settle time
    assert end is not None and end.state_name == "Crashed"
    await waits.close()


def test_settled_is_final_and_for_crashed_lasting() -> None:
    def end(kind: str) -> RunEnd:
        return RunEnd(kind, kind.title(), None, None, entered=100.0)

    assert settled(end("COMPLETED"), 100.0, 1.0)
    assert not settled(end("RUNNING"), 500.0, 1.0)
    assert not settled(end("CRASHED"), 100.5, 1.0)
    assert settled(end("CRASHED"), 101.0, 1.0)


async def test_many_waits_read_the_heads_once_per_tick() -> None:
    class Heads(MemoryEventStore):
        calls: list[int] = []

        async def heads(self, stream_ids: Sequence[str]) -> dict[str, int]:
            self.calls.append(len(stream_ids))
            return await super().heads(stream_ids)

    store = Heads()
    runs = [RunBuilder() for _ in range(30)]
    await store.append([run.created() for run in runs])
    waits = FinalWaits(store, tick=0.05)
    waiting = [asyncio.create_task(waits.wait(run.run_id, 60)) for run in runs]
    await asyncio.sleep(0.3)
    store.calls.clear()
    await asyncio.sleep(0.2)
    assert store.calls and max(store.calls) == 30  # one read of all of them per tick
    done = [run.state(Completed()) for run in runs]
    await store.append(done)
    waits.committed(done)
    assert all(end is not None and end.final for end in await asyncio.gather(*waiting))
    await waits.close()


async def test_the_leader_reads_seldom_its_commits_answer() -> None:
    class Heads(MemoryEventStore):
        calls = 0

        async def heads(self, stream_ids: Sequence[str]) -> dict[str, int]:
            Heads.calls += 1
            return await super().heads(stream_ids)

    store = Heads()
    run = RunBuilder()
    await store.append([run.created()])
    waits = FinalWaits(store, tick=0.01, leading=lambda: True)
    waiting = asyncio.create_task(waits.wait(run.run_id, 60))
    await asyncio.sleep(0.3)  # thirty standby ticks: the leader read once, when the wait came
    assert Heads.calls == 1
    done = [run.state(Completed())]
    await store.append(done)
    waits.committed(done)
    assert (await waiting) is not None
    await waits.close()


async def test_a_crash_and_its_requeue_in_one_commit_do_not_end_the_run() -> None:
    """A crash decided late (its state's time long past) and its requeue are one commit: the
    waiter must not take the Crashed for the run's end."""
    from datetime import UTC, datetime, timedelta

    from flowbus.engine.states import AwaitingRetry

    store = MemoryEventStore()
    run = RunBuilder()
    await store.append([run.created(), run.state(Running())])
    waits = FinalWaits(store, tick=0.01, settle=0.2)
    waiting = asyncio.create_task(waits.wait(run.run_id, 60))
    await asyncio.sleep(0.05)
    long_ago = datetime.now(UTC) - timedelta(seconds=30)
    decision = [run.state(Crashed(timestamp=long_ago.isoformat())),
                run.state(AwaitingRetry(timestamp=long_ago.isoformat()))]  # fmt: skip
    await store.append(decision)
    waits.committed(decision)
    await asyncio.sleep(0.5)  # past the settle time: still waiting, the run was queued again
    assert not waiting.done()
    done = [run.state(Completed(), "4")]
    await store.append(done)
    waits.committed(done)
    end = await waiting
    assert end is not None and end.state_name == "Completed"
    await waits.close()


async def test_the_leader_answers_a_wait_after_the_end_it_committed_without_a_read() -> None:
    """A wait that comes after the leader committed the end (the common case for a short
    flow) is answered from that commit; from the store once anything follows the end."""
    store = CountedReads()
    run = RunBuilder()
    ledger: dict[str, tuple[StateType, int]] = {}
    waits = FinalWaits(store, tick=3600, leading=lambda: True, head_of=ledger.get)
    events = [run.created(), run.state(Running()), run.state(Completed(), "4")]
    await store.append(events)
    waits.committed(events)
    ledger[run.run_id] = (StateType.COMPLETED, 3)
    end = await waits.wait(run.run_id, 60)
    assert end is not None and (end.state_name, end.result) == ("Completed", "4")
    assert store.views == 0

    ledger[run.run_id] = (StateType.SCHEDULED, 4)  # queued again by another orchestrator
    waiting = asyncio.create_task(waits.wait(run.run_id, 0.2))
    assert (await waiting) is not None and store.views == 1  # read: the end is not the last


async def test_a_wait_on_a_run_the_leader_holds_under_way_reads_nothing() -> None:
    store = CountedReads()
    run = RunBuilder()
    ledger = {run.run_id: (StateType.RUNNING, 2)}
    waits = FinalWaits(store, tick=3600, leading=lambda: True, head_of=ledger.get)
    await store.append([run.created(), run.state(Running())])
    waiting = asyncio.create_task(waits.wait(run.run_id, 60))
    await asyncio.sleep(0.05)
    done = [run.state(Completed(), "4")]
    await store.append(done)
    waits.committed(done)
    end = await waiting
    assert end is not None and end.state_name == "Completed" and store.views == 0
    await waits.close()


class CommitBehind(CountedReads):
    """A store whose reads wait for the commit under way (as SQLite's one connection does)."""

    def __init__(self) -> None:
        super().__init__()
        self.commit_done = asyncio.Event()
        self.heads_read = 0

    async def heads(self, stream_ids: Sequence[str]) -> dict[str, int]:
        self.heads_read += 1
        await self.commit_done.wait()
        return await super().heads(stream_ids)


def _leading_while_committing(
    store: MemoryEventStore, run_id: str, seq: int
) -> tuple[FinalWaits, set[str]]:
    """The leader's waits, its ledger holding ``run_id`` Completed at ``seq`` and its writer
    committing events of it until the returned set is emptied."""
    ledger = {run_id: (StateType.COMPLETED, seq)}
    in_flight = {run_id}
    waits = FinalWaits(store, tick=3600, leading=lambda: True, head_of=ledger.get,
                       committing=in_flight.__contains__)  # fmt: skip
    return waits, in_flight


async def test_a_wait_on_an_end_being_committed_here_waits_for_that_commit() -> None:
    """The ledger has the run's end (admitted) while this process commits it: the wait is
    answered by the commit, with no read queued behind it."""
    store = CommitBehind()
    run = RunBuilder()
    await store.append([run.created(), run.state(Running())])
    waits, in_flight = _leading_while_committing(store, run.run_id, 3)
    waiting = asyncio.create_task(waits.wait(run.run_id, 60))
    await asyncio.sleep(0.05)
    done = [run.state(Completed(), "4")]
    await store.append(done)
    in_flight.clear()
    waits.committed(done)
    end = await asyncio.wait_for(waiting, 10)  # the read never finishes in this test
    assert end is not None and end.state_name == "Completed" and end.result == "4"
    assert (store.heads_read, store.views) == (0, 0)
    await waits.close()


async def test_a_commit_after_the_end_without_a_state_answers_from_a_read() -> None:
    """The end was committed before; what is in flight follows it (no state in it): the
    commit finds no end to answer with, so the run is read once it is committed."""
    store = CountedReads()
    run = RunBuilder()
    events = [run.created(), run.state(Running()), run.state(Completed(), "4")]
    await store.append(events)
    waits, in_flight = _leading_while_committing(store, run.run_id, 4)
    waiting = asyncio.create_task(waits.wait(run.run_id, 60))
    await asyncio.sleep(0.05)
    assert not waiting.done() and store.views == 0
    after = [run.log("after the end")]
    await store.append(after)
    in_flight.clear()
    waits.committed(after)
    end = await asyncio.wait_for(waiting, 10)
    assert end is not None and end.state_name == "Completed" and store.views == 1
    await waits.close()
