"""Functions that work both ways, as Prefect's do: called from sync code they run and return
the value; called from async code (an async flow or task, or a coroutine outside any run) they
return a coroutine to await."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from flowbus.engine.context import flow_run_var, task_run_var
from flowbus.engine.loops import run_sync


def in_async_context() -> bool:
    """Whether the caller is async code (judged by its run, else by a running event loop)."""
    task_ctx = task_run_var.get()
    if task_ctx is not None:
        return task_ctx.task.is_async
    flow_ctx = flow_run_var.get()
    if flow_ctx is not None:
        return flow_ctx.flow.is_async
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def dispatch(coro: Coroutine[Any, Any, Any]) -> Any:
    """The coroutine itself for async callers, its result for sync ones."""
    if in_async_context():
        return coro
    return run_sync(coro)
