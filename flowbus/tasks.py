"""Task helpers under the module names Prefect users import them from."""

from flowbus.engine.caching import task_input_hash
from flowbus.engine.inputs import allow_failure, unmapped
from flowbus.engine.retries import exponential_backoff
from flowbus.engine.tasks import Task, task

__all__ = ["Task", "allow_failure", "exponential_backoff", "task", "task_input_hash", "unmapped"]
