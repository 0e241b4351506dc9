"""A flow run by hand on a machine with a profile shows on the team's server; when the server
cannot be reached its events wait in a local spool and go with the next run: nothing lost."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from .stack import Stack, wait_until
from .test_remote import TOKEN, laptop

SCRIPT = """
from flowbus import flow, task


@task
def double(x: int) -> int:
    return 2 * x


@flow
def by_hand(n: int) -> int:
    return sum(double(i) for i in range(n))


print(by_hand({n}))
"""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    server = Stack(tmp_path / "server", env={"FLOWBUS_API_TOKEN": TOKEN})
    server.start_orchestrator()
    yield server
    server.close()


class Forwarder:
    """A TCP port that forwards to ``target`` while up: the server as the laptop sees it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listener: socket.socket | None = None

    def up(self) -> None:
        listener = self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            # shutdown wakes the thread blocked in accept(); a bare close would leave the
            # port accepting.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                inbound, _ = listener.accept()
            except OSError:
                return
            outbound = socket.create_connection(self.target)
            for source, sink in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()


def run_by_hand(env: dict[str, str], folder: Path, n: int) -> tuple[str, str]:
    """Run a flow by hand as a script; (what it printed, its log on stderr)."""
    script = folder / f"by_hand_{n}.py"
    script.write_text(SCRIPT.format(n=n))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip(), done.stderr


def server_runs(stack: Stack) -> dict[str, str]:
    runs = stack.with_store(lambda s: s.list_flow_runs(flow_name="by-hand", limit=100))
    return {run.result or "": run.state_name for run in runs}


def test_a_run_by_hand_reports_to_the_server_and_waits_out_an_outage(
    stack: Stack, tmp_path: Path
) -> None:
    api = urlparse(stack.api_url)
    forwarder = Forwarder((api.hostname or "127.0.0.1", api.port or 80))
    env = {**laptop(tmp_path), "FLOWBUS_API_URL": f"http://127.0.0.1:{forwarder.port}",
           "FLOWBUS_API_TOKEN": TOKEN, "FLOWBUS_API_FLUSH_SECONDS": "2"}  # fmt: skip
    home = Path(env["FLOWBUS_HOME"])

    forwarder.up()
    assert run_by_hand(env, tmp_path, 3)[0] == "6"
    assert server_runs(stack) == {"6": "Completed"}  # in the server's store when it returned
    [run] = stack.with_store(lambda s: s.list_flow_runs(flow_name="by-hand"))
    assert len(stack.with_store(lambda s: s.list_task_runs(run.id))) == 3

    forwarder.down()  # the server is out of reach: the run finishes all the same
    printed, logged = run_by_hand(env, tmp_path, 4)
    assert printed == "12" and "events kept in" in logged
    spooled = list((home / "outbox").rglob("*.jsonl"))
    assert len(spooled) == 1

    forwarder.up()  # the next run sends the spooled events first
    run_by_hand(env, tmp_path, 5)
    wait_until(lambda: len(server_runs(stack)) == 3, what="the spooled run on the server")
    assert server_runs(stack) == {"6": "Completed", "12": "Completed", "20": "Completed"}
    assert not list((home / "outbox").rglob("*.jsonl"))
    assert not (home / "flowbus.db").exists()  # nothing recorded on the laptop itself
    assert stack.with_store(lambda s: s.verify_projections()) == []


async def test_the_server_refuses_events_of_a_deployments_run(stack: Stack) -> None:
    import httpx

    quick = stack.deploy("quick")
    stack.start_agent("agent-1")
    async with stack.client() as client:
        run_id = (await client.submit(quick, {"n": 1})).run_id
        assert (await client.wait(run_id, timeout=60)).completed
    forged = {"schema_version": 1, "id": "00000000-0000-4000-8000-000000000001",
              "stream_id": run_id, "seq": 99, "occurred": "2026-11-30T00:00:00Z",
              "type": "log", "task_run_id": None, "level": 20, "logger": "x",
              "message": "forged"}  # fmt: skip
    answer = httpx.post(f"{stack.api_url}/api/v1/events", json={"events": [forged]},
                        headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden"
