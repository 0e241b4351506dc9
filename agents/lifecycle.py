"""One life for every daemon and every long-lived part of one: open, serve, drain, close.

    daemon = Recorder(client, store)
    await daemon.start()    # open(): subscribe, bind; it serves once this returns
    ...
    daemon.stop()           # from anywhere (a signal handler, another part)
    await daemon.wait()     # drain(), the loops end, close(); raises what failed

A daemon's background loops (``loops()``) run under one ``asyncio.TaskGroup``: a loop that
fails ends the daemon (the others are cancelled, ``close()`` runs, ``wait()`` raises the
failure). ``stop()`` lets ``drain()`` finish or hand back the work under way while the loops
still run (an agent keeps heartbeating while its runs finish), then cancels them.
``run()`` is ``start()`` then ``wait()``.

The orchestrator, its leader's work, the agent, the scheduler and the recorder are daemons.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import structlog

log = structlog.get_logger("flowbus.daemon")

Loop = Callable[[], Coroutine[Any, Any, None]]
#: A loop still running this long after it was cancelled is cancelled again.
CANCEL_AGAIN_SECONDS = 1.0


class Daemon:
    """The common life (see the module's docstring); subclasses define what they serve."""

    #: The name its task and log lines carry.
    name = "daemon"
    #: After ``drain()``, how long loops that watch ``stopping`` have to end by themselves
    #: (a batch in flight committed and acked) before they are cancelled.
    grace = 0.0

    def __init__(self) -> None:
        self._stopping = asyncio.Event()
        self._serving: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    # --- what a daemon defines ---------------------------------------------------------------

    async def open(self) -> None:
        """Subscribe, bind, read what it needs: once this returns the daemon serves."""

    def loops(self) -> Mapping[str, Loop]:
        """Its background loops, by name; each runs until cancelled (or until ``stopping``)."""
        return {}

    async def drain(self) -> None:
        """After ``stop()``, while the loops still run: finish or hand back the work under way."""

    async def close(self) -> None:
        """After the loops ended (or one failed): give back what ``open()`` took."""

    # --- the life, the same for all ----------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def until_stopped(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait for ``stop()`` for at most ``timeout`` seconds; whether it came (loops pause
        with this instead of sleeping, so a stop ends the pause)."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def start(self) -> None:
        """Open, then serve in the background until ``stop()``."""
        if self._serving is not None:
            return
        try:
            await self.open()
        except BaseException:
            await self.close()  # what it took before it failed is given back
            raise
        self._serving = asyncio.get_running_loop().create_task(self._serve(), name=self.name)

    async def wait(self) -> None:
        """Until the daemon has stopped (after ``stop()``, or a loop's failure: raised here)."""
        if self._serving is None:
            await self._stopping.wait()
            return
        await asyncio.shield(self._serving)

    async def run(self) -> None:
        """``start()``, then ``wait()``."""
        await self.start()
        await self.wait()

    def stop(self) -> None:
        """Ask the daemon to stop (drain, then end its loops and close); idempotent."""
        self._stopping.set()

    def abort(self) -> None:
        """Cancel the daemon's serving at once (its ``close()`` still runs): for a daemon that
        did not stop in the time it was given."""
        self._stopping.set()
        if self._serving is not None:
            self._serving.cancel()

    def fail(self, error: BaseException) -> None:
        """A part the daemon started on its own (not one of its loops) failed: stop, and have
        ``wait()`` raise ``error``."""
        if self._failure is None:
            self._failure = error
        self.stop()

    async def _serve(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                running = [
                    group.create_task(loop(), name=f"{self.name}:{name}")
                    for name, loop in self.loops().items()
                ]
                await self._stopping.wait()
                await self.drain()
                if running and self.grace:
                    await asyncio.wait(running, timeout=self.grace)
                await _cancel(running)
        except BaseExceptionGroup as group_error:
            failure = _first_failure(group_error)
            log.error("a daemon's loop failed", daemon=self.name, error=repr(failure))
            self._stopping.set()
            raise failure from None
        finally:
            await self.close()
        if self._failure is not None:
            raise self._failure


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the loops and wait for them to end, cancelling again any still running a second
    later: a cancel can be swallowed (Python 3.11's ``asyncio.wait_for`` returns its result
    when it completes just as it is cancelled, as nats-py's request does), and a loop that
    swallowed it would run for ever, holding its daemon's stop."""
    for task in tasks:
        task.cancel()
    pending = [task for task in tasks if not task.done()]
    while pending:
        _, still = await asyncio.wait(pending, timeout=CANCEL_AGAIN_SECONDS)
        pending = list(still)
        for task in pending:
            log.warning("a loop did not end when cancelled; cancelling it again",
                        loop=task.get_name())  # fmt: skip
            task.cancel()


def _first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception a failed loop raised (a TaskGroup wraps it in a group)."""
    first = group.exceptions[0]
    return _first_failure(first) if isinstance(first, BaseExceptionGroup) else first


def settle_heap() -> None:
    """Call once a daemon serves: what it loaded to get there (modules, models, its settings)
    lives as long as it does, so the cycle collector stops scanning it (``gc.freeze``). A full
    collection of a serving ``flowbus up`` took 55-80 ms, during which no request was
    answered; frozen, it scans only what was made since."""
    gc.collect()
    gc.freeze()


__all__ = ["Daemon", "Loop", "settle_heap"]
