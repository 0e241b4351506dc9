"""Fixtures shared by every test: an isolated $FLOWBUS_HOME per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from flowbus.engine.sinks import close_store_sinks

if TYPE_CHECKING:
    from tests.integration.stack import Stack


@pytest.fixture
def flowbus_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh $FLOWBUS_HOME (store, results) for one test; its store is closed afterwards."""
    home = tmp_path / "flowbus-home"
    monkeypatch.setenv("FLOWBUS_HOME", str(home))
    monkeypatch.delenv("FLOWBUS_STORE_URL", raising=False)
    monkeypatch.delenv("FLOWBUS_RESULTS_PATH", raising=False)
    yield home
    close_store_sinks()


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A private nats-server for the test, stopped with every daemon afterwards, even when the
    test fails. A module that wants daemons started for each test overrides ``stack`` with a
    fixture that asks for this one and starts them.

    The test reads results as a client on the stack's machine does: from its result storage,
    checked with its result key."""
    from tests.integration.stack import Stack

    stack = Stack(tmp_path)
    stack.share_results(monkeypatch)
    try:
        yield stack
    finally:
        stack.close()
