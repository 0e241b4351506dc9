"""Cluster tests need network namespaces (root): without them they skip, saying why, unless
``CI`` is set, where they fail."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Cluster, postgres_bin
from .netns import Network, skip_reason


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    reason = skip_reason() or (None if postgres_bin() else "no PostgreSQL server binaries")
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"cluster tests cannot run: {reason}")
        pytest.skip(reason)
    network = Network(tmp_path)
    made = None
    try:
        made = Cluster(network, tmp_path)
        yield made
    finally:
        if made is not None:
            made.close()
        else:
            network.close()
        print_log_tails(network.logs)


def print_log_tails(logs: Path, lines: int = 25) -> None:
    """The end of every daemon's log: pytest shows it when the test failed."""
    for log in sorted(logs.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- {log.name}", *tail, sep="\n")
