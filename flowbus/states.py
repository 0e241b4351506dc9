"""Run states under the module name Prefect users import them from (``prefect.states``).

from flowbus.states import Completed, Failed

@task
def check(rows: int):
    if rows == 0:
        return Failed(message="no rows")  # the task run ends Failed with this message
    return Completed(message=f"{rows} rows", data=rows)
"""

from typing import Any

from flowbus.engine.states import (
    AwaitingRetry,
    Cached,
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    Late,
    Paused,
    Pending,
    Retrying,
    Running,
    Scheduled,
    State,
    StateType,
    TimedOut,
)


def get_state_exception(state: State) -> BaseException:
    """The exception a failed, crashed or cancelled state stands for."""
    return state.exception()


def raise_state_exception(state: State) -> None:
    """Raise the state's exception if it is failed, crashed or cancelled."""
    if state.is_failed() or state.is_crashed() or state.is_cancelled():
        raise state.exception()


def is_state_iterable(value: Any) -> bool:
    """A list, tuple or set made only of states (and not empty)."""
    return (
        isinstance(value, list | tuple | set)
        and bool(value)
        and all(isinstance(v, State) for v in value)
    )


__all__ = [
    "AwaitingRetry",
    "Cached",
    "Cancelled",
    "Cancelling",
    "Completed",
    "Crashed",
    "Failed",
    "Late",
    "Paused",
    "Pending",
    "Retrying",
    "Running",
    "Scheduled",
    "State",
    "StateType",
    "TimedOut",
    "get_state_exception",
    "is_state_iterable",
    "raise_state_exception",
]
