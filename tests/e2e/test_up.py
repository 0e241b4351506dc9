"""``flowbus up`` as a user runs it: in the foreground, stopped by a signal, leaving nothing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from flowbus.broker import EmbeddedNatsServer
from flowbus.broker.subjects import event_subject
from tests.integration.store_contract import RunBuilder
from tests.processes import alive, listening_port

from .conftest import ROOT


class Up:
    """A ``flowbus up`` process; its output lines are read as they come."""

    def __init__(
        self, home: Path, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> None:
        environment = {**os.environ, "FLOWBUS_HOME": str(home), "NO_COLOR": "1", **(env or {})}
        if env is None:
            environment.pop("FLOWBUS_NATS_URL", None)
        if "--api-port" not in args:  # a free port: test modules run side by side
            args = (*args, "--api-port", "0")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowbus", "up", *args],
            cwd=cwd,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []

    def read_until(self, text: str, timeout: float = 30) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip())
            if text in line:
                return "\n".join(self.lines)
        raise AssertionError(f"{text!r} not printed; output so far:\n" + "\n".join(self.lines))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(30)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def taken_port() -> Iterator[int]:
    with listening_port() as port:
        yield port


async def publish_event(url: str) -> str:
    run = RunBuilder()
    record = run.created()
    client = await nats.connect(url)
    await client.jetstream().publish(
        event_subject(run.run_id, record.type), record.body(), headers={"Nats-Msg-Id": record.id}
    )
    await client.close()
    return run.run_id


def recorded(db: Path, run_id: str) -> bool:
    if not db.exists():
        return False
    with sqlite3.connect(db) as conn:
        return (
            conn.execute("SELECT count(*) FROM events WHERE stream_id = ?", (run_id,)).fetchone()[0]
            == 1
        )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_up_records_events_and_stops_cleanly(
    tmp_path: Path, taken_port: int, stop_signal: int
) -> None:
    home = tmp_path / "home"
    up = Up(home, "--port", str(taken_port))
    try:
        output = up.read_until("flowbus is up")
        assert f"port {taken_port} is taken" in output
        url = re.search(r"NATS\s+(nats://127\.0\.0\.1:\d+)", output).group(1)  # type: ignore[union-attr]
        server_pid = int(re.search(r"nats-server pid (\d+)", output).group(1))  # type: ignore[union-attr]
        assert json.loads((home / "up.json").read_text())["nats_url"] == url

        run_id = asyncio.run(publish_event(url))
        deadline = time.monotonic() + 15
        while not recorded(home / "flowbus.db", run_id):
            assert time.monotonic() < deadline, "the recorder did not record the event"
            time.sleep(0.05)

        assert up.stop(stop_signal) == 0
        assert "flowbus is down" in up.read_until("flowbus is down")
        assert not alive(server_pid)
        assert not (home / "up.json").exists()
    finally:
        up.kill()


def test_up_uses_a_configured_nats_server(tmp_path: Path) -> None:
    with EmbeddedNatsServer(tmp_path / "js") as server:
        up = Up(tmp_path / "home", env={"FLOWBUS_NATS_URL": server.url})
        try:
            output = up.read_until("flowbus is up")
            assert f"NATS          {server.url}" in output
            assert "nats-server pid" not in output  # it started none of its own
            assert up.stop() == 0
        finally:
            up.kill()
