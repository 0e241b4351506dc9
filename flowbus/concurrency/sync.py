"""``concurrency`` and ``rate_limit`` for sync code (``prefect.concurrency.sync``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from flowbus.concurrency import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    acquire,
)
from flowbus.engine.loops import run_sync


@contextmanager
def concurrency(
    names: str | Sequence[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
    **ignored: Any,
) -> Iterator[None]:
    """Hold ``occupy`` slots of each named global limit while the block runs.

    A name without a limit is no limit (with ``strict=True``: ``ConcurrencySlotAcquisitionError``);
    past ``timeout_seconds`` of waiting, ``AcquireConcurrencySlotTimeoutError`` (a TimeoutError).
    """
    release = run_sync(acquire(names, occupy, timeout_seconds, strict, decay=False))
    try:
        yield
    finally:
        if release is not None:
            run_sync(release())


def rate_limit(
    names: str | Sequence[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Take ``occupy`` slots of each named limit, which drain at the limit's slot decay rate
    (it needs one: ``flowbus gcl create NAME --limit N --slot-decay-per-second R``)."""
    run_sync(acquire(names, occupy, timeout_seconds, strict, decay=True))


__all__ = [
    "AcquireConcurrencySlotTimeoutError",
    "ConcurrencySlotAcquisitionError",
    "concurrency",
    "rate_limit",
]
