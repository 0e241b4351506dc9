"""Futures of submitted task runs: ``.result()``, ``.wait()``, ``.state``, and ``await``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from asyncio import events as _events
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from flowbus.engine.errors import UsageError
from flowbus.engine.states import Crashed, Pending, State

if TYPE_CHECKING:
    from flowbus.engine.context import TaskRun

R = TypeVar("R")


class TaskRunFuture(Generic[R]):
    """The eventual final state of a submitted task run.

    In a sync flow call ``.result()``; in an async flow ``await future`` (or ``.result()`` once
    it is done): blocking the loop that runs the task would never finish.
    """

    __slots__ = ("_future", "task_run")

    def __init__(
        self,
        task_run: TaskRun,
        future: asyncio.Future[State] | concurrent.futures.Future[State],
    ) -> None:
        self.task_run = task_run
        self._future = future

    def __repr__(self) -> str:
        return f"TaskRunFuture({self.task_run.name!r}, {self.state!r})"

    @property
    def task_run_id(self) -> str:
        return self.task_run.id

    @property
    def state(self) -> State:
        """The task run's current state (its final state once done)."""
        future = self._future
        if future.done():
            if future.cancelled():
                return Crashed(message="the task run was cancelled before it finished")
            error = future.exception()
            if error is not None:  # the engine itself was interrupted (Ctrl-C, cancellation)
                return Crashed(message=f"{type(error).__name__}: {error}", data=error)
            return future.result()
        return self.task_run.state or Pending()

    def done(self) -> bool:
        return self._future.done()

    def _final_state(self, timeout: float | None) -> State:
        future = self._future
        if isinstance(future, concurrent.futures.Future):
            return future.result(timeout)
        if future.done():
            return future.result()
        running = _events._get_running_loop()
        if running is not None and running is future.get_loop():
            raise UsageError(
                f"task run {self.task_run.name!r} runs on this event loop: "
                "use `await future` in an async flow instead of `.result()`/`.wait()`"
            )
        done = concurrent.futures.Future[State]()
        future.get_loop().call_soon_threadsafe(lambda: _chain(future, done))
        return done.result(timeout)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the task run has finished (or ``timeout`` seconds pass)."""
        try:
            self._final_state(timeout)
        except (TimeoutError, concurrent.futures.TimeoutError):
            return

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """The task's return value; raises its exception if it failed."""
        return self._final_state(timeout).result(raise_on_failure=raise_on_failure)

    async def wait_async(self) -> State:
        future = self._future
        if isinstance(future, concurrent.futures.Future):
            if future.done():
                return future.result()
            return await asyncio.wrap_future(future)
        if future.get_loop() is asyncio.get_running_loop():
            return await future
        return await asyncio.wrap_future(_as_concurrent(future))

    def __await__(self) -> Generator[Any, None, R]:
        state = yield from self.wait_async().__await__()
        return state.result()

    def add_done_callback(self, fn: Any) -> None:
        self._future.add_done_callback(lambda _: fn(self))


def _chain(source: asyncio.Future[State], target: concurrent.futures.Future[State]) -> None:
    def copy(done: asyncio.Future[State]) -> None:
        if done.cancelled():
            target.cancel()
        elif done.exception() is not None:
            target.set_exception(done.exception())
        else:
            target.set_result(done.result())

    if source.done():
        copy(source)
    else:
        source.add_done_callback(copy)


def _as_concurrent(future: asyncio.Future[State]) -> concurrent.futures.Future[State]:
    done = concurrent.futures.Future[State]()
    future.get_loop().call_soon_threadsafe(_chain, future, done)
    return done


class FutureList(list[TaskRunFuture[R]]):
    """The futures of a ``.map()``: wait for all, or collect all results in order."""

    def wait(self, timeout: float | None = None) -> None:
        wait(self, timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        wait(self, timeout)
        return [f.result(timeout, raise_on_failure=raise_on_failure) for f in self]


def _split(
    futures: Iterable[TaskRunFuture[Any]],
) -> tuple[list[concurrent.futures.Future[State]], list[TaskRunFuture[Any]]]:
    threaded, looped = [], []
    for future in futures:
        if isinstance(future._future, concurrent.futures.Future):
            threaded.append(future._future)
        else:
            looped.append(future)
    return threaded, looped


class DoneAndNotDoneFutures(NamedTuple, Generic[R]):
    """What ``wait`` returns: the futures done, and those not done when it gave up."""

    done: set[TaskRunFuture[R]]
    not_done: set[TaskRunFuture[R]]


def wait(
    futures: Iterable[TaskRunFuture[R]], timeout: float | None = None
) -> DoneAndNotDoneFutures[R]:
    """Block until every future is done (or ``timeout`` seconds pass); returns (done, not_done)."""
    futures = list(futures)
    # One waiter for all of them: waking once per future costs a thread switch each.
    threaded, looped = _split(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    if threaded:
        concurrent.futures.wait(threaded, timeout)
    for future in looped:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        future.wait(left)
    done = {f for f in futures if f.done()}
    return DoneAndNotDoneFutures(done, {f for f in futures if f not in done})


def as_completed(
    futures: Iterable[TaskRunFuture[R]], timeout: float | None = None
) -> Iterator[TaskRunFuture[R]]:
    """Yield the futures as they finish; ``TimeoutError`` if some are not done in ``timeout``."""
    by_backing: dict[concurrent.futures.Future[State], TaskRunFuture[R]] = {}
    for future in futures:
        backing = future._future
        if not isinstance(backing, concurrent.futures.Future):
            if backing.get_loop() is _events._get_running_loop():
                raise UsageError("as_completed() blocks: in an async flow use asyncio.as_completed")
            backing = _as_concurrent(backing)
        by_backing[backing] = future
    try:
        for finished in concurrent.futures.as_completed(by_backing, timeout):
            yield by_backing[finished]
    except concurrent.futures.TimeoutError as exc:
        raise TimeoutError(f"futures not done after {timeout} s") from exc


async def wait_all(futures: Iterable[TaskRunFuture[Any]]) -> None:
    """Wait for every future from async code, without blocking a running loop."""
    threaded, looped = _split(futures)
    pending = [f for f in threaded if not f.done()]
    if pending:
        loop = asyncio.get_running_loop()
        if loop.is_running():
            await loop.run_in_executor(None, concurrent.futures.wait, pending)
        else:
            concurrent.futures.wait(pending)  # stepped by run_sync: blocking is the caller's wish
    for future in looped:
        await future.wait_async()
