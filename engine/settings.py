"""Where flowbus keeps things, read from the environment each time (tests change it)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """``$FLOWBUS_HOME``, default ``~/.flowbus``."""
    return Path(os.environ.get("FLOWBUS_HOME") or Path.home() / ".flowbus").expanduser()


def store_url() -> str:
    """``$FLOWBUS_STORE_URL``, default the SQLite file ``$FLOWBUS_HOME/flowbus.db``."""
    return os.environ.get("FLOWBUS_STORE_URL") or f"sqlite:///{home() / 'flowbus.db'}"


def results_path() -> Path:
    """Where persisted task results live: ``$FLOWBUS_RESULTS_PATH`` or ``$FLOWBUS_HOME/results``."""
    configured = os.environ.get("FLOWBUS_RESULTS_PATH")
    return Path(configured).expanduser() if configured else home() / "results"


def sqlite_synchronous() -> str:
    """SQLite durability: ``FULL`` (default, fsync per commit) or ``NORMAL``."""
    value = os.environ.get("FLOWBUS_SQLITE_SYNCHRONOUS", "FULL").upper()
    return value if value in {"FULL", "NORMAL", "EXTRA", "OFF"} else "FULL"


def env_float(name: str, default: float) -> float:
    """A number of seconds (or any float) from the environment, ``default`` when unset."""
    value = os.environ.get(name)
    return float(value) if value else default
