"""Events over a real nats-server into a real SQLite store, through the recorder."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest
import structlog.testing
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from flowbus import flow, task
from flowbus.agents import Recorder, RecorderSettings
from flowbus.broker import EmbeddedNatsServer, NatsEventSink, ensure_streams, subjects
from flowbus.engine.documents import save_document
from flowbus.engine.records import EventRecord
from flowbus.engine.sinks import use_sink
from flowbus.engine.states import Running
from flowbus.engine.store import SqliteEventStore
from flowbus.engine.store.backup import RESTORE
from tests.integration.stack import until
from tests.integration.store_contract import RunBuilder


@task(retries=1, retry_delay_seconds=0)
def shaky(attempts: list[int]) -> int:
    attempts.append(1)
    if len(attempts) == 1:
        raise ConnectionError("first attempt fails")
    return len(attempts)


@flow
def remote_job(n: int) -> int:
    return sum([shaky([]) for _ in range(n)])


@pytest.fixture
async def client(nats_server: EmbeddedNatsServer) -> AsyncIterator[Client]:
    connection = await nats.connect(nats_server.url)
    js = connection.jetstream()
    await ensure_streams(js)
    for stream in (subjects.EVENTS_STREAM, subjects.DEAD_LETTER_STREAM):
        await js.purge_stream(stream)
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(subjects.EVENTS_STREAM, subjects.RECORDER_CONSUMER)
    yield connection
    await connection.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    async with SqliteEventStore(tmp_path / "flowbus.db") as opened:
        yield opened


class RecorderTask:
    """A recorder running as a task for the duration of a ``with`` block."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def __aenter__(self) -> Recorder:
        self.task = asyncio.create_task(self.recorder.run())
        return self.recorder

    async def __aexit__(self, *exc: object) -> None:
        self.recorder.stop()
        await asyncio.wait_for(self.task, 10)


async def publish(
    client: Client, record: EventRecord, msg_id: str | None = None, subject: str | None = None
) -> None:
    await client.jetstream().publish(
        subject or subjects.event_subject(record.stream_id, record.type),
        record.body(),
        headers={"Nats-Msg-Id": msg_id or record.id},
    )


async def test_a_flow_run_reaches_the_store_through_nats(
    nats_server: EmbeddedNatsServer, client: Client, store: SqliteEventStore
) -> None:
    sink = NatsEventSink(nats_server.url)
    try:
        with use_sink(sink):
            assert remote_job(3) == 6  # events acked by JetStream before the call returns
    finally:
        sink.close()
    async with RecorderTask(Recorder(client, store)) as recorder:
        await until(lambda: _has_completed_run(store))
    [run] = await store.list_flow_runs()
    assert run.flow_name == "remote-job"
    task_runs = await store.list_task_runs(run.id)
    assert [t.retries for t in task_runs] == [1, 1, 1]
    assert await store.verify_projections() == []
    assert recorder.counts["recorded"] == len(await store.read_stream(run.id))
    assert recorder.counts["dead_lettered"] == 0


async def _has_completed_run(store: SqliteEventStore) -> bool:
    runs = await store.list_flow_runs(state="COMPLETED")
    return bool(runs)


async def test_bad_messages_are_dead_lettered_and_the_recorder_keeps_serving(
    client: Client, store: SqliteEventStore
) -> None:
    run = RunBuilder()
    created = run.created()
    settings = RecorderSettings(max_message_bytes=4096)
    js = client.jetstream()
    async with RecorderTask(Recorder(client, store, settings)) as recorder:
        await js.publish(f"flowbus.event.{run.run_id}.flow_run.created", b"{not json")
        await js.publish(f"flowbus.event.{run.run_id}.mystery", b'{"type": "mystery"}')
        await js.publish(f"flowbus.event.{run.run_id}.log", b"x" * 5000)
        await publish(client, created, subject=f"flowbus.event.{new_run()}.flow_run.created")
        await publish(client, created, msg_id="the-real-one")
        await until(lambda: _head_is(store, run.run_id, 1))
    assert recorder.counts["dead_lettered"] == 4
    dead = await js.pull_subscribe(subjects.DEAD_LETTER_SUBJECTS, durable="inspect")
    messages = await dead.fetch(4, timeout=5)
    reasons = sorted(m.headers["Flowbus-Error"].split(":")[0] for m in messages)
    assert reasons[:3] == ["malformed", "malformed", "oversized"]
    assert reasons[3].startswith("subject")
    assert all(m.headers["Flowbus-Subject"].startswith("flowbus.event.") for m in messages)


def new_run() -> str:
    return RunBuilder().run_id


async def _head_is(store: SqliteEventStore, run_id: str, seq: int) -> bool:
    return await store.head(run_id) == seq


async def test_redeliveries_are_recorded_once(client: Client, store: SqliteEventStore) -> None:
    run = RunBuilder()
    events = run.complete_run(tasks=2)
    async with RecorderTask(Recorder(client, store)) as recorder:
        for event in events:
            await publish(client, event)
        for event in events:  # the same events again, past the stream's dedupe (new msg ids)
            await publish(client, event, msg_id=f"again-{event.id}")
        await until(lambda: _head_is(store, run.run_id, len(events)))
        await until(lambda: _consumer_idle(client))
    assert [e.id for e in await store.read_stream(run.run_id)] == [e.id for e in events]
    assert recorder.counts["recorded"] == 2 * len(events)  # acked both times; stored once


async def _consumer_idle(client: Client) -> bool:
    info = await client.jetstream().consumer_info(
        subjects.EVENTS_STREAM, subjects.RECORDER_CONSUMER
    )
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_an_event_ahead_of_a_gap_waits_for_it(
    client: Client, store: SqliteEventStore
) -> None:
    run = RunBuilder()
    first, second = run.created(), run.state(Running())
    settings = RecorderSettings(retry_delay=0.2)
    async with RecorderTask(Recorder(client, store, settings)) as recorder:
        await publish(client, second)
        await until(lambda: _retried(recorder))
        assert await store.head(run.run_id) == 0
        await publish(client, first)
        await until(lambda: _head_is(store, run.run_id, 2))
    assert recorder.counts["dead_lettered"] == 0


async def _retried(recorder: Recorder) -> bool:
    return recorder.counts["retried"] > 0


async def test_a_restarted_recorder_loses_and_repeats_nothing(
    client: Client, store: SqliteEventStore
) -> None:
    runs = [RunBuilder() for _ in range(20)]
    batches = [run.complete_run(tasks=3) for run in runs]
    settings = RecorderSettings(batch_size=7)
    async with RecorderTask(Recorder(client, store, settings)):
        for events in batches[:10]:
            for event in events:
                await publish(client, event)
        await until(lambda: _head_is(store, runs[0].run_id, len(batches[0])))
    for events in batches[10:]:  # published while no recorder runs
        for event in events:
            await publish(client, event)
    async with RecorderTask(Recorder(client, store, settings)):
        await until(lambda: _all_recorded(store, runs, len(batches[0])))
    assert len(await store.read_all(limit=10_000)) == sum(len(b) for b in batches)
    assert await store.verify_projections() == []


async def _all_recorded(store: SqliteEventStore, runs: list[RunBuilder], count: int) -> bool:
    return all([await store.head(run.run_id) == count for run in runs])


async def test_an_event_on_a_quiet_stream_is_recorded_at_once(
    client: Client, store: SqliteEventStore
) -> None:
    """The recorder takes what is there when an event comes, without waiting for a batch to
    fill: with fetches that may wait ten minutes, each of two events spaced out is recorded
    well within this test's deadline (a batch fetch would have sat on the first for the whole
    wait, a second with the default: the p99 of every run awaited one after another)."""
    recorder = Recorder(client, store, RecorderSettings(wait_seconds=600))
    recorder.grace = 0.5
    run = RunBuilder()
    first, second = run.created(), run.state(Running())
    async with RecorderTask(recorder):
        await asyncio.sleep(0.5)  # the recorder is waiting on a quiet stream
        await publish(client, first)
        await until(lambda: _head_is(store, run.run_id, 1), 30, "the first event recorded")
        await publish(client, second)
        await until(lambda: _head_is(store, run.run_id, 2), 30, "the second event recorded")


async def test_a_restore_older_than_the_stream_says_what_is_missing(
    client: Client, store: SqliteEventStore
) -> None:
    """A restore's catch-up records again what the stream holds since its backup; when the
    stream's limits have dropped events from that time, the leader says so (what happened in
    between is missing from the restored store) rather than carrying on as if it were whole."""
    js = client.jetstream()
    for number in range(3):
        await js.publish(f"flowbus.event.run-{number}.flow_run.state", b"{}")
    await js.purge_stream(subjects.EVENTS_STREAM, keep=1)  # the stream's limits, in short
    since = datetime.now(UTC) - timedelta(hours=1)
    await save_document(store, RESTORE, "latest", {"since": since.isoformat(),
                                                   "reconciled": False})  # fmt: skip
    recorder = Recorder(client, store)
    with structlog.testing.capture_logs() as logs:
        puller = await recorder._subscription()
    try:
        said = [e for e in logs if "no longer holds" in e["event"]]
        assert len(said) == 1 and said[0]["since"] == since.isoformat(), logs
        assert said[0]["log_level"] == "error"
    finally:
        await puller.close()
