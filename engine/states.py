"""Run states: Prefect's types and names, one enum, and the in-process ``State`` value."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from flowbus.engine.clock import canonical, now_iso
from flowbus.engine.errors import (
    CancelledRun,
    CrashedRun,
    FailedRun,
    MissingResult,
    UnfinishedRun,
)


class StateType(enum.StrEnum):
    """The kind of a state; the transition rules are written over these."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_TYPES


TERMINAL_TYPES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)

#: Every state name flowbus uses, with the type it belongs to (Prefect's names).
STATE_NAMES: dict[str, StateType] = {
    "Scheduled": StateType.SCHEDULED,
    "Late": StateType.SCHEDULED,
    "AwaitingRetry": StateType.SCHEDULED,
    "Pending": StateType.PENDING,
    "Running": StateType.RUNNING,
    "Retrying": StateType.RUNNING,
    "Paused": StateType.PAUSED,
    "Cancelling": StateType.CANCELLING,
    "Completed": StateType.COMPLETED,
    "Cached": StateType.COMPLETED,
    "Failed": StateType.FAILED,
    "TimedOut": StateType.FAILED,
    "Cancelled": StateType.CANCELLED,
    "Crashed": StateType.CRASHED,
}

_NOT_SET: Any = object()


class State:
    """A run's state at one moment: type, name, time, message, and (in process) its data.

    ``data`` is the run's return value for completed states and the exception for failed ones;
    it is kept in memory only. States read back from the store carry no data. ``traceback`` is
    the formatted traceback of a failure.
    """

    __slots__ = ("_timestamp", "data", "message", "name", "traceback", "type")

    def __init__(
        self,
        type: StateType,
        name: str | None = None,
        message: str | None = None,
        data: Any = _NOT_SET,
        timestamp: datetime | str | None = None,
        traceback: str | None = None,
    ) -> None:
        self.type = type
        self.name = name or type.value.capitalize()
        self.message = message
        self.data = data
        self._timestamp = canonical(timestamp) if timestamp else now_iso()
        self.traceback = traceback

    @property
    def timestamp(self) -> datetime:
        """When the run entered this state (UTC)."""
        return datetime.fromisoformat(self._timestamp)

    @property
    def timestamp_iso(self) -> str:
        return self._timestamp

    def __repr__(self) -> str:
        return f"{self.name}({self.message!r})" if self.message else f"{self.name}()"

    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_cancelling(self) -> bool:
        return self.type is StateType.CANCELLING

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_final(self) -> bool:
        return self.type in TERMINAL_TYPES

    @property
    def has_data(self) -> bool:
        return self.data is not _NOT_SET

    def result(self, raise_on_failure: bool = True) -> Any:
        """The run's result. A failed, crashed or cancelled state raises its exception (or
        ``FailedRun``/``CrashedRun``/``CancelledRun`` with its message when it carries none);
        with ``raise_on_failure=False`` that exception is returned instead."""
        if not self.is_final():
            raise UnfinishedRun(f"run is {self.name}: it has no result yet")
        if self.type is StateType.COMPLETED:
            if not self.has_data:
                raise MissingResult(f"{self.name} state carries no result in this process")
            return self.data
        error = self.exception()
        if raise_on_failure:
            raise error
        return error

    def exception(self) -> BaseException:
        """The exception a failed, crashed or cancelled state stands for."""
        if isinstance(self.data, BaseException):
            return self.data
        wrapper = _FAILURE_ERRORS.get(self.type, FailedRun)
        return wrapper(self.message or f"run ended {self.name}")


_FAILURE_ERRORS: dict[StateType, type[Exception]] = {
    StateType.FAILED: FailedRun,
    StateType.CRASHED: CrashedRun,
    StateType.CANCELLED: CancelledRun,
}


async def outcome(
    run: Awaitable[State], return_state: bool, returned_a_state: Callable[[], bool] | None = None
) -> Any:
    """Await a run's final state; give the state itself, or its result (raising on failure).
    ``returned_a_state`` says, once the run ended, whether its function returned a state: a
    failed one is given back as it is (Prefect's behaviour)."""
    state = await run
    handed_back = returned_a_state is not None and returned_a_state() and not state.is_completed()
    return state if return_state or handed_back else state.result()


def _factory(type_: StateType, default_name: str) -> Any:
    # ``data`` defaults to None as in Prefect: ``return Completed(message="ok")`` has result None.
    def make(
        message: str | None = None, data: Any = None, *, name: str | None = None, **kwargs: Any
    ) -> State:
        return State(type_, name or default_name, message=message, data=data, **kwargs)

    make.__name__ = default_name
    make.__doc__ = f"A {type_.value} state named {default_name!r} (or ``name``)."
    return make


Scheduled = _factory(StateType.SCHEDULED, "Scheduled")
Late = _factory(StateType.SCHEDULED, "Late")
AwaitingRetry = _factory(StateType.SCHEDULED, "AwaitingRetry")
Pending = _factory(StateType.PENDING, "Pending")
Running = _factory(StateType.RUNNING, "Running")
Retrying = _factory(StateType.RUNNING, "Retrying")
Paused = _factory(StateType.PAUSED, "Paused")
Cancelling = _factory(StateType.CANCELLING, "Cancelling")
Completed = _factory(StateType.COMPLETED, "Completed")
Cached = _factory(StateType.COMPLETED, "Cached")
Failed = _factory(StateType.FAILED, "Failed")
TimedOut = _factory(StateType.FAILED, "TimedOut")
Cancelled = _factory(StateType.CANCELLED, "Cancelled")
Crashed = _factory(StateType.CRASHED, "Crashed")
