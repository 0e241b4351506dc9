"""Task runners under the module name Prefect users import them from.

``DaskTaskRunner`` and ``RayTaskRunner`` need their extras (``pip install 'flowbus[dask]'``,
``'flowbus[ray]'``); they are imported when first used, so ``import flowbus`` stays light.
"""

from typing import TYPE_CHECKING, Any

from flowbus.engine.task_runners import ConcurrentTaskRunner, TaskRunner, ThreadPoolTaskRunner

if TYPE_CHECKING:
    from flowbus.engine.dask_runner import DaskTaskRunner
    from flowbus.engine.ray_runner import RayTaskRunner


def __getattr__(name: str) -> Any:
    if name == "DaskTaskRunner":
        from flowbus.engine.dask_runner import DaskTaskRunner

        return DaskTaskRunner
    if name == "RayTaskRunner":
        from flowbus.engine.ray_runner import RayTaskRunner

        return RayTaskRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConcurrentTaskRunner",
    "DaskTaskRunner",
    "RayTaskRunner",
    "TaskRunner",
    "ThreadPoolTaskRunner",
]
