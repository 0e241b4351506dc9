"""Where flowbus keeps things, read from the environment each time (tests change it).

The light half of the settings: the engine reads these without pydantic (``import flowbus``
stays light); the daemons' settings models (``agents/settings.py``) validate the same variables
and take their defaults from here, so each default is written once.
"""

from __future__ import annotations

import os
from pathlib import Path

#: ``FLOWBUS_HOME`` when unset.
DEFAULT_HOME = Path.home() / ".flowbus"
#: ``FLOWBUS_SQLITE_SYNCHRONOUS`` when unset: fsync every group commit.
DEFAULT_SQLITE_SYNCHRONOUS = "FULL"
#: ``FLOWBUS_LOGGING_LEVEL`` when unset.
DEFAULT_LOGGING_LEVEL = "INFO"


def home() -> Path:
    """``$FLOWBUS_HOME``, default ``~/.flowbus``."""
    return Path(os.environ.get("FLOWBUS_HOME") or DEFAULT_HOME).expanduser()


def store_url() -> str:
    """``$FLOWBUS_STORE_URL``, default the SQLite file ``$FLOWBUS_HOME/flowbus.db``."""
    return os.environ.get("FLOWBUS_STORE_URL") or f"sqlite:///{home() / 'flowbus.db'}"


def results_path() -> Path:
    """Where persisted task results live: ``$FLOWBUS_RESULTS_PATH`` or ``$FLOWBUS_HOME/results``."""
    configured = os.environ.get("FLOWBUS_RESULTS_PATH")
    return Path(configured).expanduser() if configured else home() / "results"


def sqlite_synchronous() -> str:
    """SQLite durability: ``FULL`` (default, fsync per commit) or ``NORMAL``."""
    value = os.environ.get("FLOWBUS_SQLITE_SYNCHRONOUS", DEFAULT_SQLITE_SYNCHRONOUS).upper()
    return value if value in {"FULL", "NORMAL", "EXTRA", "OFF"} else DEFAULT_SQLITE_SYNCHRONOUS


def logging_level() -> str:
    """``$FLOWBUS_LOGGING_LEVEL``: the lowest run-log level shown and recorded."""
    return os.environ.get("FLOWBUS_LOGGING_LEVEL", DEFAULT_LOGGING_LEVEL).upper()


def env_float(name: str, default: float) -> float:
    """A number of seconds (or any float) from the environment, ``default`` when unset."""
    value = os.environ.get(name)
    return float(value) if value else default
