"""Per-run locks for the orchestrator's decisions: one asyncio lock per run, made when a run is
first held and dropped when nobody holds or waits for it (a ledger of many runs keeps none for
the runs at rest)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class RunLocks:
    """One asyncio lock per run, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, run_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(run_id, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[run_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[run_id]
            if users == 1:
                del self._locks[run_id]
            else:
                self._locks[run_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


__all__ = ["RunLocks"]
