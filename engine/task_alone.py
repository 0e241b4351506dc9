"""A task called outside any flow run: its function, through its cache when it has one.

Prefect 3 runs a task called on its own as a task run of its own, and its cache policy applies:
a second call with the same inputs returns the cached value without running the function.
flowbus records no run for such a call (there is no flow run to hold it), but honours the
cache the same way, in the same result storage a task run inside a flow uses, so a call
outside a flow and a run inside one share their cached values.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from flowbus.engine.caching import CacheStore

if TYPE_CHECKING:
    from flowbus.engine.tasks import Task

log = logging.getLogger("flowbus.engine")


def call_alone(task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call ``task``'s function outside a flow run, through its cache if it has one."""
    if not task.caching:
        return task.fn(*args, **kwargs)
    key = _cache_key(task, args, kwargs)
    store = _results(task)
    if task.is_async:
        return _call_async(task, args, kwargs, key, store)
    if key is not None and not task.refresh_cache:
        hit = store.read(key)
        if hit is not None:
            return hit.value
    value = task.fn(*args, **kwargs)
    if key is not None:
        store.write(key, value, task.cache_expiration)
    return value


async def _call_async(
    task: Task[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    key: str | None,
    store: CacheStore,
) -> Any:
    if key is not None and not task.refresh_cache:
        hit = store.read(key)
        if hit is not None:
            return hit.value
    value = task.fn(*args, **kwargs)
    if inspect.isawaitable(value):
        value = await value
    if key is not None:
        store.write(key, value, task.cache_expiration)
    return value


def _cache_key(task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    parameters = task.parameters.bind(args, kwargs)
    # What a policy may look at: the task and its inputs; no task run, no flow run.
    context = SimpleNamespace(task=task, task_run=None, flow_run_context=None,
                              parameters=parameters)  # fmt: skip
    try:
        key: str | None = task.cache_policy.compute_key(context, parameters, {})
    except Exception as exc:  # a user's key function failing: the call runs uncached
        log.warning("task %r: cache key raised %r; not caching", task.name, exc)
        return None
    return key


def _results(task: Task[..., Any]) -> CacheStore:
    storage = task.cache_policy.key_storage
    return CacheStore(Path(storage).expanduser() if storage else task.result_path)


__all__ = ["call_alone"]
