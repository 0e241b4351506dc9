"""Futures of submitted task runs, under Prefect's module and class names (``prefect.futures``).

futures = [fetch.submit(url) for url in urls]
done, not_done = wait(futures, timeout=30)
for future in as_completed(futures):
    print(future.result())
"""

from typing import Any

from flowbus.engine.futures import (
    DoneAndNotDoneFutures,
    FutureList,
    TaskRunFuture,
    as_completed,
    wait,
)

#: Prefect's class names: one future class serves them all here.
PrefectFuture = TaskRunFuture
PrefectConcurrentFuture = TaskRunFuture
PrefectDistributedFuture = TaskRunFuture
PrefectWrappedFuture = TaskRunFuture
PrefectFutureList = FutureList


def resolve_futures_to_states(value: Any) -> Any:
    """``value`` with every future in it (also in lists, tuples, sets, dicts) replaced by its
    final state, waiting for each."""
    if isinstance(value, TaskRunFuture):
        return value._final_state(None)
    if isinstance(value, list | tuple | set):
        return type(value)(resolve_futures_to_states(v) for v in value)
    if isinstance(value, dict):
        return {k: resolve_futures_to_states(v) for k, v in value.items()}
    return value


def resolve_futures_to_results(value: Any) -> Any:
    """``value`` with every future in it replaced by its result (raising if one failed)."""
    if isinstance(value, TaskRunFuture):
        return value.result()
    if isinstance(value, list | tuple | set):
        return type(value)(resolve_futures_to_results(v) for v in value)
    if isinstance(value, dict):
        return {k: resolve_futures_to_results(v) for k, v in value.items()}
    return value


__all__ = [
    "DoneAndNotDoneFutures",
    "FutureList",
    "PrefectConcurrentFuture",
    "PrefectDistributedFuture",
    "PrefectFuture",
    "PrefectFutureList",
    "PrefectWrappedFuture",
    "TaskRunFuture",
    "as_completed",
    "resolve_futures_to_results",
    "resolve_futures_to_states",
    "wait",
]
