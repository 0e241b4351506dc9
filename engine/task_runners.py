"""Task runners decide where submitted task runs execute.

Every task run is the same engine coroutine; a runner only chooses the thread and loop for it.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextvars
import os
import threading
from asyncio import events as _events
from collections.abc import Coroutine
from typing import Any

from flowbus.engine.loops import background, run_sync
from flowbus.engine.states import State

TaskCoroutine = Coroutine[Any, Any, State]


def _run_in_context(context: contextvars.Context, coro: TaskCoroutine) -> State:
    return context.run(run_sync, coro)


class TaskRunner(abc.ABC):
    """Where ``.submit()`` and ``.map()`` run their task runs; one instance per flow run."""

    @abc.abstractmethod
    def submit(
        self, coro: TaskCoroutine, is_async: bool
    ) -> asyncio.Future[State] | concurrent.futures.Future[State]:
        """Start a task-run coroutine and return a future of its final state."""

    def duplicate(self) -> TaskRunner:
        """A fresh runner with the same settings, for a new flow run."""
        return type(self)()

    def shutdown(self) -> None:  # noqa: B027 - optional hook: most runners hold nothing
        """Release resources once the flow run's task runs have finished."""


_shared_pool: concurrent.futures.ThreadPoolExecutor | None = None
_shared_lock = threading.Lock()


def _shared_thread_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _shared_pool
    if _shared_pool is None:
        with _shared_lock:
            if _shared_pool is None:
                workers = min(32, (os.cpu_count() or 1) + 4)
                _shared_pool = concurrent.futures.ThreadPoolExecutor(
                    workers, thread_name_prefix="flowbus-task"
                )
    return _shared_pool


class ConcurrentTaskRunner(TaskRunner):
    """The default: async tasks run concurrently on the event loop, sync tasks in a thread pool.

    In an async flow the loop is the flow's own; in a sync flow it is flowbus's background loop.
    """

    def submit(
        self, coro: TaskCoroutine, is_async: bool
    ) -> asyncio.Future[State] | concurrent.futures.Future[State]:
        context = contextvars.copy_context()
        if is_async:
            loop = _events._get_running_loop()
            if loop is not None and loop.is_running():
                return loop.create_task(coro, context=context)
            return asyncio.run_coroutine_threadsafe(coro, background.loop)
        return _shared_thread_pool().submit(_run_in_context, context, coro)


class ThreadPoolTaskRunner(TaskRunner):
    """Every task run (sync or async) in a pool of ``max_workers`` threads, as in Prefect."""

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def duplicate(self) -> TaskRunner:
        return ThreadPoolTaskRunner(self.max_workers)

    def submit(
        self, coro: TaskCoroutine, is_async: bool
    ) -> asyncio.Future[State] | concurrent.futures.Future[State]:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self.max_workers, thread_name_prefix="flowbus-task"
                )
        return self._pool.submit(_run_in_context, contextvars.copy_context(), coro)

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
