"""The local lane's choice for each batch of a run's events: recorded here while the
orchestrator of this process records, published the ordinary way otherwise, and never lost
in between (a store that refuses the batch, events the recorder must refuse itself)."""

from __future__ import annotations

import asyncio
import threading

from flowbus.agents.local_lane import LocalLaneSink
from flowbus.broker.event_sink import Fence
from flowbus.engine.errors import StoreError
from flowbus.engine.records import EventRecord
from tests.integration.store_contract import RunBuilder

FENCE = Fence("run-1", 1)


class Published:
    """The ordinary way, as the lane sees it: what was published (in order) and flushed."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.flushes = 0

    def emit_fenced(self, record: EventRecord, fence: Fence) -> None:
        self.events.append((record.id, fence.attempt))

    async def flush_async(self) -> None:
        self.flushes += 1


class Recorder:
    """The orchestrator's side: records here while ``leading``; ``refuse`` raises as a
    locked store does; ``elsewhere`` names items to publish instead."""

    def __init__(self) -> None:
        self.leading = True
        self.refuse = False
        self.elsewhere: list[int] = []
        self.recorded: list[str] = []

    def records_here(self) -> bool:
        return self.leading

    async def record_here(self, items: list[tuple[EventRecord, tuple[str, int]]]) -> list[int]:
        if self.refuse:
            raise StoreError("database is locked")
        self.recorded += [r.id for i, (r, _) in enumerate(items) if i not in self.elsewhere]
        return self.elsewhere


def lane(recorder: Recorder, published: Published) -> LocalLaneSink:
    return LocalLaneSink(published, recorder, asyncio.get_running_loop())  # type: ignore[arg-type]


def events(count: int) -> list[EventRecord]:
    run = RunBuilder()
    return [run.created(), *(run.log(f"line {n}") for n in range(count - 1))]


async def test_events_are_recorded_here_while_this_process_records() -> None:
    recorder, published = Recorder(), Published()
    sink = lane(recorder, published)
    records = events(3)
    emitted = threading.Thread(target=lambda: [sink.emit_fenced(r, FENCE) for r in records])
    emitted.start()  # from a flow's thread, as a sync flow emits them
    emitted.join()
    await sink.flush_async()
    assert recorder.recorded == [r.id for r in records]
    assert published.events == [] and sink.fell_back == 0


async def test_events_are_published_when_another_process_records() -> None:
    recorder, published = Recorder(), Published()
    recorder.leading = False
    sink = lane(recorder, published)
    records = events(2)
    for record in records:
        sink.emit_fenced(record, FENCE)
    await sink.flush_async()
    assert recorder.recorded == []
    assert published.events == [(r.id, 1) for r in records] and published.flushes == 1


async def test_a_batch_the_store_refuses_is_published_in_order_not_lost() -> None:
    recorder, published = Recorder(), Published()
    sink = lane(recorder, published)
    first, then = events(4)[:2], events(2)
    recorder.refuse = True
    for record in first:
        sink.emit_fenced(record, FENCE)
    await sink.flush_async()
    recorder.refuse = False
    for record in then:
        sink.emit_fenced(record, FENCE)
    await sink.flush_async()
    assert published.events == [(r.id, 1) for r in first]  # the recorder records them later
    assert recorder.recorded == [r.id for r in then]


async def test_events_the_lane_does_not_record_go_to_the_recorder() -> None:
    recorder, published = Recorder(), Published()
    recorder.elsewhere = [1]  # malformed, say: the recorder dead-letters it with its reason
    sink = lane(recorder, published)
    records = events(3)
    for record in records:
        sink.emit_fenced(record, FENCE)
    await sink.flush_async()
    assert recorder.recorded == [records[0].id, records[2].id]
    assert published.events == [(records[1].id, 1)]
