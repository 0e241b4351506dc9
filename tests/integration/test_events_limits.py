"""How much of the events stream JetStream keeps (``FLOWBUS_EVENTS_MAX_AGE_HOURS``,
``FLOWBUS_EVENTS_MAX_BYTES``), on a real nats-server: an existing stream takes new limits in
place, a size cap drops the oldest events (and says from when it holds them, for a restore's
catch-up), and unset again the stream keeps everything."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest

from flowbus.broker import EmbeddedNatsServer, subjects
from flowbus.broker.streams import ensure_streams, oldest_event_time

from .stack import free_port

MIB = 1024 * 1024


async def limits_then_fill(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        await ensure_streams(js)
        config = (await js.stream_info(subjects.EVENTS_STREAM)).config
        assert config.max_age == 7 * 24 * 3600 and config.max_bytes in (None, -1)

        monkeypatch.setenv("FLOWBUS_EVENTS_MAX_AGE_HOURS", "1")
        monkeypatch.setenv("FLOWBUS_EVENTS_MAX_BYTES", str(MIB))
        await ensure_streams(js)  # the stream exists: updated in place
        config = (await js.stream_info(subjects.EVENTS_STREAM)).config
        assert (config.max_age, config.max_bytes) == (3600, MIB)

        started = datetime.now(UTC)
        assert await oldest_event_time(js) is None  # nothing dropped yet
        body = b"x" * 4096
        for number in range(768):  # some 3 MiB of events: the oldest go
            await js.publish(f"flowbus.event.run-{number}.flow_run.state", body)
        state = (await js.stream_info(subjects.EVENTS_STREAM)).state
        assert state.bytes <= MIB and state.first_seq > 1 and state.last_seq == 768
        # What a restore's catch-up checks: the oldest event held, stored after the first.
        oldest = await oldest_event_time(js)
        assert oldest is not None and started <= oldest <= datetime.now(UTC)
        first = await js.get_msg(subjects.EVENTS_STREAM, seq=state.first_seq)
        assert first.time == oldest

        monkeypatch.delenv("FLOWBUS_EVENTS_MAX_AGE_HOURS")
        monkeypatch.delenv("FLOWBUS_EVENTS_MAX_BYTES")
        await ensure_streams(js)
        config = (await js.stream_info(subjects.EVENTS_STREAM)).config
        assert config.max_age == 7 * 24 * 3600 and config.max_bytes in (None, -1)
    finally:
        await client.close()


def test_the_events_stream_takes_its_limits_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = EmbeddedNatsServer(tmp_path / "js", port=free_port()).start()
    try:
        asyncio.run(limits_then_fill(server.url, monkeypatch))
    finally:
        server.stop()
