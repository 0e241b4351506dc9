"""Global concurrency limits kept by this process: what ``concurrency()`` and ``rate_limit()``
use in a flow run by hand, or outside any run. The limits are read from the store (cached for
a second); the slots are counted here, so they bound this process's work (agents share theirs
through the orchestrator instead)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from types import SimpleNamespace
from typing import Any

from flowbus.engine.concurrency import NamedSlots, Release
from flowbus.engine.documents import using_store
from flowbus.engine.slot_table import GLOBAL, GLOBAL_LIMIT, SlotTable, Waiter

#: How long limits read from the store are taken as they are.
LIMITS_SECONDS = 1.0


class LocalSlots:
    """A slot table for one process; safe to use from any thread and loop."""

    def __init__(self) -> None:
        self.table = SlotTable()
        self._lock = threading.Lock()
        self._limits: dict[str, tuple[float, int | None]] = {}
        self._waiting: dict[str, concurrent.futures.Future[None]] = {}
        self._timer: threading.Timer | None = None

    async def acquire(self, tags: list[str], holder: str, run_id: str) -> Release | None:
        return None  # tag limits bind the task runs of deployments only

    async def acquire_named(self, names: list[str], request: NamedSlots) -> Release | None:
        keys = [GLOBAL + name for name in names]
        limits = await self._read(keys)
        limited = sorted(limits)
        request.check(SimpleNamespace(
            limited=limited,
            too_small=[k for k in limited if limits[k] < request.occupy],
            no_decay=[k for k in limited if request.decay and not self.table.decay.get(k)],
        ))  # fmt: skip
        if not limited:
            return None
        waiter = Waiter(request.holder, tuple(limited), request.run_id, "local",
                        request.occupy, request.holder, request.decay)  # fmt: skip
        granted: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            if self.table.acquire(waiter, self._known()):
                granted.set_result(None)
            else:
                self._waiting[request.holder] = granted
                self._arm_drain()
        try:
            await asyncio.wait_for(asyncio.wrap_future(granted), request.timeout_seconds)
        except TimeoutError:
            await self._release(request.holder)
            raise request.timed_out() from None
        if request.decay:
            return None

        async def release() -> None:
            await self._release(request.holder)

        return release

    async def _release(self, holder: str) -> None:
        with self._lock:
            self._waiting.pop(holder, None)
            self._tell(self.table.release(holder, self._known()))

    def _tell(self, granted: list[Waiter]) -> None:
        for waiter in granted:
            future = self._waiting.pop(waiter.holder, None)
            if future is not None and not future.done():
                future.set_result(None)

    def _arm_drain(self) -> None:
        delay = self.table.next_drain(self._known())
        if delay is None or self._timer is not None:
            return

        def fire() -> None:
            with self._lock:
                self._timer = None
                self._tell(self.table.grant(self._known()))
                self._arm_drain()

        self._timer = threading.Timer(delay, fire)
        self._timer.daemon = True
        self._timer.start()

    def _known(self) -> dict[str, int]:
        return {key: limit for key, (_, limit) in self._limits.items() if limit is not None}

    async def _read(self, keys: list[str]) -> dict[str, int]:
        now = time.monotonic()
        stale = [k for k in keys if now - self._limits.get(k, (-LIMITS_SECONDS, None))[0]
                 >= LIMITS_SECONDS]  # fmt: skip
        if stale:

            async def read(store: Any) -> dict[str, Any]:
                return {k: await store.get_document(GLOBAL_LIMIT, k[len(GLOBAL) :]) for k in stale}

            for key, document in (await using_store(None, read)).items():
                body: dict[str, Any] = document.body if document is not None else {}
                active = bool(body) and body.get("active", True)
                with self._lock:
                    self._limits[key] = (now, int(body["limit"]) if active else None)
                    if active:
                        self.table.decay[key] = float(body.get("slot_decay_per_second") or 0.0)
        return {k: limit for k in keys if (limit := self._limits[k][1]) is not None}


_local: LocalSlots | None = None
_local_lock = threading.Lock()


def local_slots() -> LocalSlots:
    """This process's slot table for global limits."""
    global _local
    with _local_lock:
        if _local is None:
            _local = LocalSlots()
        return _local
