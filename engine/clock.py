"""Timestamps as canonical ISO 8601 text (UTC, microseconds, ``+00:00``), made cheaply.

Events and projections store this one format, so comparing text compares time. Formatting the
date and time once per second and adding microseconds costs a fraction of ``isoformat()``, and
timestamps are made three times per task run.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from flowbus.engine.errors import UsageError

_cached: tuple[int, str] = (-1, "")


def now_iso() -> str:
    """The current UTC time, e.g. ``2026-11-24T02:39:08.469123+00:00``."""
    global _cached
    ns = time.time_ns()
    seconds, micros = divmod(ns // 1000, 1_000_000)
    cached_second, prefix = _cached
    if seconds != cached_second:
        prefix = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _cached = (seconds, prefix)
    return f"{prefix}.{micros:06d}+00:00"


def canonical(value: str | datetime) -> str:
    """Any ISO timestamp (or datetime) in the canonical format; our own strings pass unchanged."""
    if isinstance(value, str):
        if len(value) == 32 and value.endswith("+00:00"):
            return value
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    except OverflowError:
        # A time within a day of year 1 or 9999 with an offset: in UTC it is past the calendar's
        # ends, and as a bound it means "from the start" or "to the end" of time.
        end = datetime.min if value.year == 1 else datetime.max
        return end.replace(tzinfo=UTC).isoformat(timespec="microseconds")


_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: The longest duration taken (a thousand years: for ever is "no limit", not a duration).
LONGEST = timedelta(days=366 * 1000)


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``2w``, ``45s`` (and sums such as ``1d12h``)."""
    spec = text.strip().lower()
    parts = _DURATION.findall(spec)
    if not parts or _DURATION.sub("", spec).strip():
        raise UsageError(f"duration {text!r}: give a number and a unit, e.g. 90d, 12h, 30m")
    total = sum(int(n) * _UNITS[unit] for n, unit in parts)
    if total > LONGEST.total_seconds():
        raise UsageError(f"duration {text!r} is over a thousand years: leave it out instead")
    return timedelta(seconds=total)
