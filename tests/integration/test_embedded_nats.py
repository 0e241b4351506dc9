"""The embedded nats-server: JetStream works, data survives restarts, ports and binaries fail
clearly, and nothing is left running."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js.api import RetentionPolicy, StreamConfig

from flowbus.broker import BrokerError, EmbeddedNatsServer, PortInUse
from tests.processes import alive, listening_port


@pytest.fixture
def listening_socket() -> Iterator[int]:
    with listening_port() as port:
        yield port


async def test_jetstream_work_queue_round_trip(nats_server: EmbeddedNatsServer) -> None:
    client = await nats.connect(nats_server.url)
    try:
        js = client.jetstream()
        await js.add_stream(
            StreamConfig(name="T1", subjects=["t1.>"], retention=RetentionPolicy.WORK_QUEUE)
        )
        ack = await js.publish("t1.default", b"hello", headers={"Nats-Msg-Id": "m1"})
        again = await js.publish("t1.default", b"hello", headers={"Nats-Msg-Id": "m1"})
        assert again.duplicate and again.seq == ack.seq
        subscription = await js.pull_subscribe("t1.default", durable="workers")
        [message] = await subscription.fetch(1, timeout=5)
        assert message.data == b"hello"
        await message.ack_sync()
        assert (await js.stream_info("T1")).state.messages == 0  # a work queue forgets acked work
    finally:
        await client.close()


async def test_streams_survive_a_restart(tmp_path: Path) -> None:
    store = tmp_path / "jetstream"
    with EmbeddedNatsServer(store) as first:
        client = await nats.connect(first.url)
        js = client.jetstream()
        await js.add_stream(StreamConfig(name="KEEP", subjects=["keep.>"]))
        await js.publish("keep.x", b"1")
        await client.close()
    with EmbeddedNatsServer(store, sync="always") as second:
        client = await nats.connect(second.url)
        info = await client.jetstream().stream_info("KEEP")
        await client.close()
    assert info.state.messages == 1


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    server = EmbeddedNatsServer(tmp_path / "js").start()
    pid = server.pid
    assert pid is not None and alive(pid)
    server.stop()
    assert not alive(pid)
    server.stop()  # stopping twice is harmless


def test_a_killed_server_can_be_started_again(tmp_path: Path) -> None:
    server = EmbeddedNatsServer(tmp_path / "js").start()
    pid = server.pid
    server.kill()
    assert pid is not None and not alive(pid)
    server.stop()
    server.start()
    assert server.pid != pid
    server.stop()


def test_a_taken_port_is_a_clear_error_or_a_fallback(tmp_path: Path, listening_socket: int) -> None:
    with pytest.raises(PortInUse, match=str(listening_socket)):
        EmbeddedNatsServer(tmp_path / "js", port=listening_socket).start()
    with EmbeddedNatsServer(
        tmp_path / "js", port=listening_socket, fallback_to_free_port=True
    ) as s:
        assert s.port != listening_socket


def test_a_missing_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBUS_NATS_SERVER", str(tmp_path / "no-such-nats-server"))
    with pytest.raises(BrokerError, match="cannot run nats-server"):
        EmbeddedNatsServer(tmp_path / "js").start()


def test_a_bad_sync_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sync"):
        EmbeddedNatsServer(tmp_path / "js", sync="sometimes")


def test_the_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    if not shutil.which("setpriv"):
        pytest.skip("needs util-linux setpriv (Linux)")
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from flowbus.broker import EmbeddedNatsServer\n"
        f"server = EmbeddedNatsServer({str(tmp_path / 'js')!r}).start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        assert alive(server_pid)
        parent.kill()  # SIGKILL: the parent gets no chance to clean up
        parent.wait()
        for _ in range(100):
            if not alive(server_pid):
                break
            time.sleep(0.05)
        assert not alive(server_pid), "the nats-server outlived its parent"
    finally:
        parent.kill()
