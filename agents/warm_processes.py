"""Processes for process-isolated runs, forked from a warm server.

Starting an interpreter and importing flowbus takes about 300 ms here; a run's process forked
from multiprocessing's forkserver, which imported flowbus once (``set_forkserver_preload``),
starts in milliseconds. The forkserver is itself a fresh interpreter started by the agent (no
NATS connection, thread or event loop of the agent is inherited), and the user's flow code is
still imported by each run's own process, from the file on disk at that moment.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess

#: Modules the warm server imports once, so that the runs' processes need not.
PRELOAD = ["flowbus.agents.child"]

_context: ForkServerContext | None = None


def context() -> ForkServerContext:
    """The forkserver context, with what it preloads set (once per process)."""
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        assert isinstance(ctx, ForkServerContext)
        ctx.set_forkserver_preload(PRELOAD)
        _context = ctx
    return _context


def warm_up() -> None:
    """Start the warm server now and wait until it has imported what it preloads (one process
    forked and joined), so the first run does not wait for it."""
    context()
    forkserver.ensure_running()  # returns once the server is started, not once it is ready
    probe = context().Process(target=_nothing, name="flowbus-warm-up")
    probe.start()
    probe.join()


def _nothing() -> None:
    """The warm-up probe's work."""


def start(target: Callable[..., object], args: tuple[object, ...], name: str) -> BaseProcess:
    """A process forked from the warm server, running ``target(*args)``."""
    process = context().Process(target=target, args=args, name=name)
    process.start()
    return process


async def wait(process: BaseProcess) -> int:
    """Its exit code, once it has exited (negative: the signal that killed it)."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()
    sentinel = process.sentinel

    def exited() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(sentinel, exited)
    try:
        await ended
    finally:
        loop.remove_reader(sentinel)
    process.join()
    code = process.exitcode
    assert code is not None
    return code
