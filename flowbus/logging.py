"""Run loggers under the module name Prefect users import them from (``prefect.logging``)."""

from flowbus.engine.errors import MissingContextError
from flowbus.engine.run_logging import disable_run_logger, get_logger, get_run_logger

__all__ = ["MissingContextError", "disable_run_logger", "get_logger", "get_run_logger"]
