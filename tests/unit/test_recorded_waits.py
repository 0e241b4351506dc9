"""Waits until runs are recorded (agents/recorded_waits.py): one store read answers every
waiter, a commit in this process answers its waiters at once, a wait that runs out answers the
head it last read."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from flowbus.agents.recorded_waits import RecordedWaits
from flowbus.engine.states import Running
from flowbus.engine.store.memory import MemoryEventStore
from tests.integration.store_contract import RunBuilder


class CountedReads(MemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[int] = []

    async def heads(self, stream_ids: Sequence[str]) -> dict[str, int]:
        self.reads.append(len(stream_ids))
        return await super().heads(stream_ids)


async def test_many_waiters_are_answered_by_one_read_per_tick() -> None:
    store = CountedReads()
    runs = [RunBuilder() for _ in range(50)]
    await store.append([run.created() for run in runs])
    waits = RecordedWaits(store, tick=3600)  # one read, then a long tick
    heads = await asyncio.gather(*(waits.wait(run.run_id, 1, 60) for run in runs))
    assert heads == [1] * 50
    assert store.reads == [50]
    await waits.close()


async def test_a_commit_in_this_process_answers_at_once() -> None:
    """The store as read here never shows the commit (a follower's replica lagging, say):
    only the commit's own notice can answer the waiter."""

    class Lagging(MemoryEventStore):
        async def heads(self, stream_ids: Sequence[str]) -> dict[str, int]:
            return dict.fromkeys(stream_ids, 1)

    run = RunBuilder()
    waits = RecordedWaits(Lagging(), tick=0.01)
    waiting = asyncio.create_task(waits.wait(run.run_id, 2, 60))
    await asyncio.sleep(0.05)  # read a few times: not there
    assert not waiting.done()
    run.created()
    waits.committed([run.state(Running())])
    assert await waiting == 2
    await waits.close()


async def test_a_wait_that_runs_out_answers_the_head_it_last_read() -> None:
    store = MemoryEventStore()
    run = RunBuilder()
    await store.append([run.created()])
    waits = RecordedWaits(store, tick=0.01)
    assert await waits.wait(run.run_id, 5, 0.2) == 1
    assert await waits.wait("no-such-run", 1, 0.05) == 0
    await waits.close()
