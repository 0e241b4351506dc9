"""The errors users catch, under the module and class names Prefect users know them by.

``FlowbusError`` is the root of every error flowbus raises on purpose (``PrefectException`` is
the same class, for ported code).
"""

from flowbus.engine.errors import (
    CancelledRun,
    ConcurrencySlotAcquisitionError,
    CrashedRun,
    FailedRun,
    FlowbusError,
    MissingContextError,
    MissingResult,
    ObjectNotFound,
    ParameterTypeError,
    ParameterValidationError,
    TaskRunTimeout,
    UnfinishedRun,
    UsageError,
)
from flowbus.engine.local_pause import FlowPauseTimeout
from flowbus.engine.task_engine import UpstreamTaskError

#: Prefect's names for the same classes.
PrefectException = FlowbusError


__all__ = [
    "CancelledRun",
    "ConcurrencySlotAcquisitionError",
    "CrashedRun",
    "FailedRun",
    "FlowPauseTimeout",
    "FlowbusError",
    "MissingContextError",
    "MissingResult",
    "ObjectNotFound",
    "ParameterTypeError",
    "ParameterValidationError",
    "PrefectException",
    "TaskRunTimeout",
    "UnfinishedRun",
    "UpstreamTaskError",
    "UsageError",
]
