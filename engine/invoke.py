"""Calling user functions: sync or async, with or without a timeout."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import ctypes
import functools
import threading
from collections.abc import Callable
from typing import Any

from flowbus.engine.errors import TaskRunTimeout


def _interrupt(thread_id: int | None) -> None:
    """Best effort: raise TaskRunTimeout inside a thread that overran its timeout."""
    if thread_id is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread_id), ctypes.py_object(TaskRunTimeout)
        )


def _start_thread(fn: Callable[[], Any]) -> tuple[concurrent.futures.Future[Any], list[int]]:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    ident: list[int] = []
    context = contextvars.copy_context()

    def main() -> None:
        ident.append(threading.get_ident())
        try:
            result = context.run(fn)
        except BaseException as exc:
            outcome: tuple[Any, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        # The caller may have stopped waiting (the timeout cancelled the future): say nothing.
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            if outcome[1] is None:
                future.set_result(outcome[0])
            else:
                future.set_exception(outcome[1])

    threading.Thread(target=main, name="flowbus-timed", daemon=True).start()
    return future, ident


async def call_user_function(
    fn: Callable[..., Any],
    is_async: bool,
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
    timeout: float | None,  # noqa: ASYNC109 - the user's timeout_seconds option
) -> Any:
    """Call ``fn``; past ``timeout`` seconds raise ``TaskRunTimeout``.

    Without a timeout a sync function is called right here: no thread hop on the hot path.
    With one, it runs in its own thread so the caller can stop waiting; the overrunning thread is
    then interrupted with an asynchronous exception (it stops at its next Python instruction).
    """
    if timeout is None:
        if is_async:
            return await fn(*args, **kwargs)
        return fn(*args, **kwargs)
    ident: list[int] = []
    job: asyncio.Future[Any]
    if is_async:
        job = asyncio.ensure_future(fn(*args, **kwargs))
    else:
        future, ident = _start_thread(functools.partial(fn, *args, **kwargs))
        job = asyncio.wrap_future(future)
    done, _ = await asyncio.wait({job}, timeout=timeout)
    if not done:
        job.cancel()
        _interrupt(ident[0] if ident else None)
        raise TaskRunTimeout(f"timed out after {timeout} s")
    return job.result()
