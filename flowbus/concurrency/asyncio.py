"""``concurrency`` and ``rate_limit`` for async code (``prefect.concurrency.asyncio``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from flowbus.concurrency import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    acquire,
)


@asynccontextmanager
async def concurrency(
    names: str | Sequence[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
    **ignored: Any,
) -> AsyncIterator[None]:
    """``async with concurrency("db", occupy=2):`` as the sync one does."""
    release = await acquire(names, occupy, timeout_seconds, strict, decay=False)
    try:
        yield
    finally:
        if release is not None:
            await release()


async def rate_limit(
    names: str | Sequence[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """``await rate_limit("openai")`` as the sync one does."""
    await acquire(names, occupy, timeout_seconds, strict, decay=True)


__all__ = [
    "AcquireConcurrencySlotTimeoutError",
    "ConcurrencySlotAcquisitionError",
    "concurrency",
    "rate_limit",
]
