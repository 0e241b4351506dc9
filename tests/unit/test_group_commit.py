"""The group-commit writer: ordering, flush semantics, and failures that lose nothing."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from flowbus.engine.errors import StoreError
from flowbus.engine.loops import BackgroundLoop
from flowbus.engine.records import EventRecord
from flowbus.engine.store import MemoryEventStore
from flowbus.engine.store.writer import GroupCommitWriter
from tests.integration.store_contract import RunBuilder


class FlakyStore(MemoryEventStore):
    """Fails its first ``failures`` appends, each after ``gate`` lets it continue."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[int] = []

    async def append(self, records: Sequence[EventRecord]) -> int:
        import asyncio

        while not self.gate.is_set():
            await asyncio.sleep(0.001)
        if self.failures:
            self.failures -= 1
            raise StoreError("disk full (simulated)")
        self.batches.append(len(records))
        return await super().append(records)


@pytest.fixture
def loop() -> BackgroundLoop:
    return BackgroundLoop("test-writer")


def test_events_from_many_threads_are_committed_in_batches(loop: BackgroundLoop) -> None:
    store = FlakyStore(failures=0)
    writer = GroupCommitWriter(store, loop.loop)
    runs = [RunBuilder() for _ in range(4)]
    lock = threading.Lock()

    def produce(run: RunBuilder) -> None:
        for _ in range(250):
            with lock:  # one stream's events are numbered and handed over in order
                writer.submit(run.log("x") if run.seq else run.created())

    threads = [threading.Thread(target=produce, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.flush(timeout=10)
    assert sum(store.batches) == 1000
    assert len(store.batches) < 1000  # grouped, not one commit per event
    for run in runs:
        assert loop.call(store.head(run.run_id)) == 250


def test_a_flush_queued_behind_a_failing_batch_gets_the_error(loop: BackgroundLoop) -> None:
    store = FlakyStore(failures=1)
    writer = GroupCommitWriter(store, loop.loop)
    run = RunBuilder()
    store.gate.clear()  # the first batch is in flight while more arrive
    writer.submit(run.created())
    writer.submit(run.log("queued behind the failing batch"))
    done = threading.Event()
    errors: list[BaseException] = []

    def flusher() -> None:
        try:
            writer.flush(timeout=5)
        except StoreError as exc:
            errors.append(exc)
        done.set()

    threading.Thread(target=flusher).start()
    store.gate.set()
    assert done.wait(5), "flush must not hang when the commit before it fails"
    assert errors and "disk full" in str(errors[0])
    assert writer.backlog == 2

    writer.flush(timeout=5)  # the store works again: nothing was lost, order kept
    assert [e.seq for e in loop.call(store.read_stream(run.run_id))] == [1, 2]
    assert writer.backlog == 0


async def test_the_batch_writer_tells_which_runs_it_is_committing() -> None:
    """``committing``: from an append until its commit succeeds or fails, and no longer."""
    import asyncio

    from flowbus.engine.store.batch_writer import BatchWriter

    store = FlakyStore(failures=1)
    store.gate.clear()
    writer = BatchWriter(store)
    run, other = RunBuilder(), RunBuilder()
    first = run.created()
    failing = asyncio.create_task(writer.append([first]))
    await asyncio.sleep(0.01)
    assert writer.committing(run.run_id) and not writer.committing(other.run_id)
    store.gate.set()
    with pytest.raises(StoreError):
        await failing
    assert not writer.committing(run.run_id)
    store.gate.clear()
    again = asyncio.create_task(writer.append([first, run.log("x")]))
    await asyncio.sleep(0.01)
    assert writer.committing(run.run_id)
    store.gate.set()
    await again
    assert not writer.committing(run.run_id)
    await writer.close()
