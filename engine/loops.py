"""Event loops flowbus owns: the process's background loop, and the per-thread loops that let
synchronous callers run the one async engine code path.

``run_sync`` steps a coroutine directly in the calling thread. A task or flow coroutine that never
has to wait (the common case: a sync function called from a sync flow) finishes in that first step,
with no thread hop and no loop iteration. Only when it must wait (a retry delay, a timeout, an
unfinished upstream future) is the rest of it handed to a loop owned by the calling thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from asyncio import events as _events
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed, else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _Resume:
    """Finish a coroutine on a loop after it was stepped by hand and yielded ``first``."""

    def __init__(self, coro: Coroutine[Any, Any, T], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self._coro, self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the task (cancellation): pass it on
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _finish(resume: _Resume) -> Any:
    return await resume


_thread = threading.local()


def _private_loop(depth: int) -> asyncio.AbstractEventLoop:
    """This thread's own loop for nesting depth ``depth`` (a loop cannot run inside itself)."""
    loops: list[asyncio.AbstractEventLoop] | None = getattr(_thread, "loops", None)
    if loops is None:
        loops = _thread.loops = []
    while len(loops) <= depth:
        loops.append(new_event_loop())
    return loops[depth]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, in the calling thread.

    Works with or without a loop running in this thread (a loop that runs is blocked meanwhile,
    as any synchronous call would block it). Context variables set inside the coroutine stay
    inside it.
    """
    outer = _events._get_running_loop()
    depth = getattr(_thread, "depth", 0)
    loop = _private_loop(depth + 1 if outer is not None and outer.is_running() else depth)
    context = contextvars.copy_context()
    _events._set_running_loop(loop)
    try:
        first = context.run(coro.send, None)
    except StopIteration as stop:
        return stop.value
    except BaseException:
        coro.close()
        raise
    finally:
        _events._set_running_loop(outer)
    # It has to wait: finish it on this thread's loop, in the same context.
    _events._set_running_loop(None)
    _thread.depth = depth + 1
    try:
        task = loop.create_task(_finish(_Resume(coro, first)), context=context)
        return loop.run_until_complete(task)
    finally:
        _thread.depth = depth
        _events._set_running_loop(outer)


class BackgroundLoop:
    """A process-wide event loop in a daemon thread, started on first use.

    ``background`` runs async tasks submitted from synchronous flows; ``store_loop`` runs the
    store writer alone, so user code blocking a loop can never hold back recording.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    self._start()
        assert self._loop is not None
        return self._loop

    def _start(self) -> None:
        loop = new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=main, name=self.name, daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule a coroutine on the background loop from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the background loop and wait for its result."""
        if self.in_loop_thread():
            raise RuntimeError("BackgroundLoop.call would deadlock inside the background loop")
        return self.submit(coro).result(timeout)

    def stop(self) -> None:
        """Stop the loop and its thread (a later use starts a new one)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            if not thread.is_alive():
                loop.close()


background = BackgroundLoop("flowbus-background")
store_loop = BackgroundLoop("flowbus-store")
