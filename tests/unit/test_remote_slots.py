"""The by-hand slot provider against servers that cannot give slots: one of a release before
slots through the API (404) leaves limits as they were (tags unlimited, global limits counted by
the process), said once; one that cannot be reached is asked again for a while, then is an
error of the call, never a pass."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowbus.engine.concurrency import NamedSlots
from flowbus.engine.errors import ConcurrencySlotAcquisitionError
from flowbus.remote.profiles import Api
from flowbus.remote.slots import HttpSlots
from tests.integration.stack import free_port


@pytest.fixture
def old_server() -> Iterator[str]:
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_server_without_slots_leaves_the_limits_as_they_were(
    old_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("FLOWBUS_HOME", str(tmp_path))
    monkeypatch.delenv("FLOWBUS_STORE_URL", raising=False)
    slots = HttpSlots(Api(old_server))
    assert await slots.acquire(["warehouse"], "task-run-1", "run-1") is None
    assert await slots.acquire_named(["db"], NamedSlots(["db"])) is None  # no such local limit
    assert await slots.acquire(["warehouse"], "task-run-2", "run-1") is None
    assert [r.message for r in caplog.records].count(
        f"{old_server} has no concurrency slots (an older flowbus): limits in runs by hand are "
        "not shared with it"
    ) == 1


async def test_a_server_out_of_reach_is_an_error_not_a_pass() -> None:
    slots = HttpSlots(Api(f"http://127.0.0.1:{free_port()}"), patience=1.5)
    with pytest.raises(ConcurrencySlotAcquisitionError, match="cannot be reached"):
        await slots.acquire(["warehouse"], "task-run-1", "run-1")  # asked twice, then given up
