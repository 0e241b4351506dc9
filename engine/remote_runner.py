"""What the Dask and Ray task runners share: the task run's engine stays in the flow's process,
on flowbus's background loop; each call of the function goes to the cluster, at most
``max_in_flight`` at once (the others wait here, as Pending task runs: a map of any size
neither floods the cluster nor hangs), cancelled there past the task's timeout.

A subclass says how to connect (``_connect``), send one call (``_send``: an awaitable of its
``RemoteOutcome``), cancel it (``_cancel``) and let go of the cluster (``_disconnect``)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
from typing import Any

from flowbus.engine.errors import TaskRunTimeout, UsageError
from flowbus.engine.loops import background
from flowbus.engine.remote_calls import RemoteCall, RemoteOutcome
from flowbus.engine.task_runners import Backing, TaskCoroutine, TaskRunner

#: Calls with the cluster at once, by default.
MAX_IN_FLIGHT = 1000


class RemoteTaskRunner(TaskRunner):
    """A task runner whose task runs' functions run on a cluster."""

    remote = True

    def __init__(self, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        if max_in_flight < 1:
            raise UsageError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.max_in_flight = max_in_flight
        self._connected = False
        self._connecting: asyncio.Lock | None = None
        self._in_flight: asyncio.Semaphore | None = None

    def submit(self, coro: TaskCoroutine, is_async: bool) -> Backing:
        return asyncio.run_coroutine_threadsafe(coro, background.loop)

    async def call(self, call: RemoteCall, timeout: float | None) -> RemoteOutcome:  # noqa: ASYNC109
        """Run ``call`` on the cluster; past ``timeout`` it is cancelled there and
        ``TaskRunTimeout`` raised (a function already running on a worker may run on: neither
        Dask nor Ray can stop a thread). A task called directly (not submitted) comes here from
        the flow's own loop: the call hops to the background loop, where the client lives."""
        if asyncio.get_running_loop() is not background.loop:
            hop = asyncio.run_coroutine_threadsafe(self._call(call, timeout), background.loop)
            return await asyncio.wrap_future(hop)
        return await self._call(call, timeout)

    async def _call(self, call: RemoteCall, timeout: float | None) -> RemoteOutcome:  # noqa: ASYNC109
        if not self._connected:
            await self._connect_once()
        assert self._in_flight is not None
        async with self._in_flight:
            sent = self._send(call)
            try:
                outcome: RemoteOutcome = await asyncio.wait_for(sent, timeout)
            except TimeoutError:
                with contextlib.suppress(Exception):
                    await self._cancel(sent)
                raise TaskRunTimeout(f"timed out after {timeout} s") from None
            finally:
                self._done(sent)
        return outcome

    async def _connect_once(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if not self._connected:
                self._in_flight = asyncio.Semaphore(self.max_in_flight)
                await self._connect()
                self._connected = True

    def shutdown(self) -> None:
        """Let go of the cluster (and shut down one made for this flow run)."""
        if not self._connected:
            return
        self._connected = False
        done = asyncio.run_coroutine_threadsafe(self._disconnect(), background.loop)
        with contextlib.suppress(Exception):  # a cluster that is gone already is let go of
            done.result(60)

    @abc.abstractmethod
    async def _connect(self) -> None:
        """Reach the cluster (or make one)."""

    @abc.abstractmethod
    def _send(self, call: RemoteCall) -> Any:
        """Send ``call`` to the cluster: an awaitable of its outcome."""

    async def _cancel(self, sent: Any) -> None:
        """Cancel a call sent (its timeout passed)."""

    def _done(self, sent: Any) -> None:
        """The call's result is read: let the cluster forget it."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Let go of the cluster."""


__all__ = ["MAX_IN_FLIGHT", "RemoteTaskRunner"]
