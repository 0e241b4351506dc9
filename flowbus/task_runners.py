"""Task runners under the module name Prefect users import them from."""

from flowbus.engine.task_runners import ConcurrentTaskRunner, TaskRunner, ThreadPoolTaskRunner

__all__ = ["ConcurrentTaskRunner", "TaskRunner", "ThreadPoolTaskRunner"]
