"""Tests written from Prefect 3's documentation of each feature, run against flowbus with the
import line changed: each asserts the behaviour Prefect documents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def home(flowbus_home: Path) -> Iterator[Path]:
    """Every compat test records to a store of its own (runs by hand go to the local store)."""
    yield flowbus_home
