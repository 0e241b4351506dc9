"""A run's interruption, as its sleeping tasks hear it: a cancel (or a hand-back) ends a retry
delay at once, in whichever thread and event loop the task waits, instead of leaving the
thread asleep until the delay is over (or abandoned)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable


class Interrupt:
    """Set once, from any thread; ``sleep`` on any loop ends early when it is."""

    def __init__(self) -> None:
        self._set = threading.Event()
        self._lock = threading.Lock()
        self._wakers: list[Callable[[], None]] = []

    def is_set(self) -> bool:
        return self._set.is_set()

    def set(self) -> None:
        with self._lock:
            self._set.set()
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` at least; raise ``asyncio.CancelledError`` at once if the run is
        interrupted meanwhile (or was already)."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not woken.done():
                woken.set_result(None)

        def wake() -> None:
            loop.call_soon_threadsafe(settle)

        with self._lock:
            interrupted = self._set.is_set()
            if not interrupted:
                self._wakers.append(wake)
        try:
            deadline = time.monotonic() + seconds
            while not interrupted and (remaining := deadline - time.monotonic()) > 0:
                done, _ = await asyncio.wait({woken}, timeout=remaining)
                interrupted = bool(done)
        finally:
            with self._lock:
                if wake in self._wakers:
                    self._wakers.remove(wake)
        if interrupted:
            raise asyncio.CancelledError("the run was interrupted")


__all__ = ["Interrupt"]
