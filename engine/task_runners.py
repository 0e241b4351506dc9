"""Task runners decide where submitted task runs execute.

Every task run is the same engine coroutine; a runner only chooses the thread and loop for it.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import concurrent.futures
import contextvars
import os
import threading
import time
from asyncio import events as _events
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from flowbus.engine.loops import background, run_sync
from flowbus.engine.states import State

if TYPE_CHECKING:
    from flowbus.engine.remote_calls import RemoteCall, RemoteOutcome

TaskCoroutine = Coroutine[Any, Any, State]


def _run_in_context(context: contextvars.Context, coro: TaskCoroutine) -> State:
    return context.run(run_sync, coro)


Backing = asyncio.Future[State] | concurrent.futures.Future[State]


class _SharedQueue:
    """Task runs of one ``.map()`` drained by pool jobs that are added only when needed.

    Submitting one pool job per task run makes the submitting thread fight every worker for the
    GIL, and running many threads for tasks that never block only adds GIL switches. So one drain
    starts, and a watchdog on the background loop adds another (up to ``max_drains``) after each
    ``WATCH_EVERY`` seconds in which the process used less than ``IDLE_CPU`` of a core: then the
    drains are waiting (downloads, sleeps) and one more thread helps. A busy process gets no more
    threads; they would only take turns at the GIL. Blocking tasks reach every thread within a
    few tens of milliseconds.
    """

    WATCH_EVERY = 0.005
    IDLE_CPU = 0.5

    def __init__(
        self,
        context: contextvars.Context,
        pool: concurrent.futures.ThreadPoolExecutor,
        max_drains: int,
    ) -> None:
        self.context = context
        self.pool = pool
        self.max_drains = max_drains
        self.drains = 0
        self.finished = 0
        self.items: collections.deque[tuple[TaskCoroutine, concurrent.futures.Future[State]]] = (
            collections.deque()
        )

    def start(self) -> None:
        self._add_drain()
        if self.max_drains > 1 and len(self.items) > 1:
            clocks = (time.perf_counter(), time.process_time())
            background.loop.call_soon_threadsafe(self._watch, clocks)

    def _add_drain(self) -> None:
        self.drains += 1
        self.pool.submit(self.drain)

    def _watch(self, since: tuple[float, float]) -> None:
        if not self.items or self.drains >= self.max_drains:
            return
        now = (time.perf_counter(), time.process_time())
        elapsed = now[0] - since[0]
        if elapsed >= self.WATCH_EVERY and (now[1] - since[1]) < self.IDLE_CPU * elapsed:
            self._add_drain()
        if elapsed < self.WATCH_EVERY:
            now = since  # too soon to judge: keep measuring from the same start
        background.loop.call_later(self.WATCH_EVERY, self._watch, now)

    def drain(self) -> None:
        # A context can be entered by one thread at a time: each drain has its own copy, and
        # run_sync isolates every task run inside it.
        context = self.context.copy()
        items = self.items
        while True:
            try:
                coro, future = items.popleft()
            except IndexError:
                return
            if not future.set_running_or_notify_cancel():
                coro.close()
                continue
            try:
                future.set_result(_run_in_context(context, coro))
            except BaseException as exc:
                future.set_exception(exc)
            self.finished += 1


def _submit_many_to_pool(
    pool: concurrent.futures.ThreadPoolExecutor, workers: int, coros: list[TaskCoroutine]
) -> list[Backing]:
    queue = _SharedQueue(contextvars.copy_context(), pool, workers)
    futures: list[Backing] = []
    for coro in coros:
        future: concurrent.futures.Future[State] = concurrent.futures.Future()
        queue.items.append((coro, future))
        futures.append(future)
    if coros:
        queue.start()
    return futures


class TaskRunner(abc.ABC):
    """Where ``.submit()`` and ``.map()`` run their task runs; one instance per flow run."""

    #: Whether task runs' functions run elsewhere (a cluster): the engine then hands each call
    #: to ``call`` and keeps the rest of the run (states, retries, results) in the flow.
    remote: bool = False

    async def call(self, call: RemoteCall, timeout: float | None) -> RemoteOutcome:  # noqa: ASYNC109
        """Run one call of a task's function where this runner runs them (remote runners)."""
        raise NotImplementedError

    @abc.abstractmethod
    def submit(
        self, coro: TaskCoroutine, is_async: bool
    ) -> asyncio.Future[State] | concurrent.futures.Future[State]:
        """Start a task-run coroutine and return a future of its final state."""

    def submit_many(self, coros: list[TaskCoroutine], is_async: bool) -> list[Backing]:
        """Start many task-run coroutines of one task (``.map()``); one future each."""
        return [self.submit(coro, is_async) for coro in coros]

    def duplicate(self) -> TaskRunner:
        """A fresh runner with the same settings, for a new flow run."""
        return type(self)()

    def shutdown(self) -> None:  # noqa: B027 - optional hook: most runners hold nothing
        """Release resources once the flow run's task runs have finished."""


_shared_pool: concurrent.futures.ThreadPoolExecutor | None = None
_shared_lock = threading.Lock()
SHARED_WORKERS = min(32, (os.cpu_count() or 1) + 4)


def _shared_thread_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _shared_pool
    if _shared_pool is None:
        with _shared_lock:
            if _shared_pool is None:
                _shared_pool = concurrent.futures.ThreadPoolExecutor(
                    SHARED_WORKERS, thread_name_prefix="flowbus-task"
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

    def submit_many(self, coros: list[TaskCoroutine], is_async: bool) -> list[Backing]:
        if is_async:
            return [self.submit(coro, is_async) for coro in coros]
        return _submit_many_to_pool(_shared_thread_pool(), SHARED_WORKERS, coros)


class ThreadPoolTaskRunner(TaskRunner):
    """Every task run (sync or async) in a pool of ``max_workers`` threads, as in Prefect."""

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def duplicate(self) -> TaskRunner:
        return ThreadPoolTaskRunner(self.max_workers)

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self.max_workers, thread_name_prefix="flowbus-task"
                )
            return self._pool

    def submit(
        self, coro: TaskCoroutine, is_async: bool
    ) -> asyncio.Future[State] | concurrent.futures.Future[State]:
        return self._executor().submit(_run_in_context, contextvars.copy_context(), coro)

    def submit_many(self, coros: list[TaskCoroutine], is_async: bool) -> list[Backing]:
        pool = self._executor()
        return _submit_many_to_pool(pool, pool._max_workers, coros)

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
