"""The agents' event sink across a nats-server crash: events in flight when the server dies are
published again once the connection is back (their message ids dedupe), instead of waiting out
the whole ack timeout; the daemon's log says so in one line, with a reason."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

import nats
import pytest

from flowbus.broker import EmbeddedNatsServer
from flowbus.broker.errors import BrokerError
from flowbus.broker.event_sink import NatsEventSink
from flowbus.broker.streams import ensure_streams
from flowbus.engine.context import RunStream
from flowbus.engine.ids import new_id

from .stack import free_port


async def stream_count(url: str, run_id: str) -> int:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        info = await js.stream_info("FLOWBUS_EVENTS", subjects_filter=f"flowbus.event.{run_id}.>")
        return sum((info.state.subjects or {}).values())
    finally:
        await client.close()


async def prepare(url: str) -> None:
    client = await nats.connect(url)
    try:
        await ensure_streams(client.jetstream())
    finally:
        await client.close()


def flush_until_published(sink: NatsEventSink, patience: float = 120) -> None:
    """As an agent does: a flush that fails meanwhile (the batch went with the server) is
    asked again."""
    deadline = time.monotonic() + patience
    while True:
        try:
            sink.flush(30)
            return
        except BrokerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_stopped(pid: int, patience: float = 30) -> None:
    """Until the kernel reports process ``pid`` stopped (state T in ``/proc/<pid>/stat``)."""
    deadline = time.monotonic() + patience
    stat = Path(f"/proc/{pid}/stat")
    while stat.read_text().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
        assert time.monotonic() < deadline, f"process {pid} did not stop"
        time.sleep(0.005)


def test_a_batch_lost_with_the_server_is_published_again_on_reconnect(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = EmbeddedNatsServer(tmp_path / "js", port=free_port(), sync="always").start()
    sink: NatsEventSink | None = None
    try:
        asyncio.run(prepare(server.url))
        sink = NatsEventSink(server.url, name="test-sink")
        run_id = new_id()
        stream = RunStream(run_id, sink)
        stream.emit("log", {"task_run_id": None, "level": 20, "logger": "t", "message": "one"})
        sink.flush(30)
        # A frozen server takes the next batch into its socket and never answers; then it dies.
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
        # A signal takes effect a moment later: a batch published before that is acked (seen
        # on a busy machine), and then nothing is lost for the test to see published again.
        wait_stopped(server.process.pid)
        for n in range(3):
            stream.emit("log", {"task_run_id": None, "level": 20, "logger": "t",
                                "message": f"lost {n}"})  # fmt: skip
        caplog.set_level(logging.ERROR, logger="flowbus.engine")
        # Killed only once the batch is on its way (a busy machine may not have sent it yet).
        pump = sink._pump
        deadline = time.monotonic() + 60
        while (pump.backlog or not pump.draining) and time.monotonic() < deadline:
            time.sleep(0.01)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        server.stop()
        server.start()  # the same port: the sink reconnects by itself
        flush_until_published(sink)
        assert asyncio.run(stream_count(server.url, run_id)) == 4  # each once
        reasons = [r.getMessage() for r in caplog.records if "not published yet" in r.getMessage()]
        # Published again because the connection came back, not after the ack timeout.
        # (In one batch or, on a busy machine, more than one.)
        assert reasons and all("reconnected while" in r for r in reasons), reasons
    finally:
        if sink is not None:
            sink.close()
        server.stop()
