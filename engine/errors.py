"""The error tree of flowbus: one root, shallow branches, structured attributes."""

from __future__ import annotations

from typing import Any


class FlowbusError(Exception):
    """Root of every error flowbus raises on purpose."""


class ParameterTypeError(FlowbusError, ValueError):
    """Parameters given to a flow do not match its signature (Prefect's name for it).

    ``errors`` holds pydantic's structured error list; ``str()`` names each field and the reason.
    """

    def __init__(self, flow_name: str, errors: list[dict[str, Any]]) -> None:
        self.flow_name = flow_name
        self.errors = errors
        lines = [f"invalid parameters for flow {flow_name!r}:"]
        for err in errors:
            where = ".".join(str(part) for part in err.get("loc", ())) or "(parameters)"
            lines.append(f"  {where}: {err.get('msg', 'invalid value')}")
        super().__init__("\n".join(lines))


#: The name this error had before it took Prefect's: ``except ParameterValidationError`` works.
ParameterValidationError = ParameterTypeError


class StoreError(FlowbusError):
    """The event store refused or failed an operation."""


class SequenceError(StoreError):
    """An event's sequence number in its stream is a gap or a duplicate of another event."""

    def __init__(self, stream_id: str, expected: int, got: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.got = got
        kind = "gap" if got > expected else "duplicate"
        super().__init__(f"stream {stream_id}: sequence {kind}: expected {expected}, got {got}")


class TransitionRejected(FlowbusError):
    """The rule table refused a state transition."""


class UnfinishedRun(FlowbusError):
    """A result was asked of a run that has not reached a final state."""


class MissingResult(FlowbusError):
    """A state has no result attached (for example it was loaded from the store)."""


class TaskRunTimeout(FlowbusError, TimeoutError):
    """A task or flow run exceeded its ``timeout_seconds``."""


class UsageError(FlowbusError):
    """The API was used in a way that cannot work, with a hint how to fix it."""


class MissingContextError(UsageError):
    """Code that needs a flow or task run (a run logger, the run context) ran outside one."""


class FailedRun(FlowbusError):
    """The result of a Failed state that carries no exception of its own."""


class CrashedRun(FlowbusError):
    """The result of a Crashed state that carries no exception of its own."""


class CancelledRun(FlowbusError):
    """The result of a Cancelled state that carries no exception of its own."""


class ConcurrencySlotAcquisitionError(FlowbusError):
    """Slots of a global concurrency limit could not be had (missing limit with ``strict=True``,
    more slots asked than the limit has, or the wait ran past ``timeout_seconds``)."""


class ObjectNotFound(UsageError, ValueError):
    """A named object (a block, a variable, a deployment, an artifact) does not exist."""


class VersionConflict(StoreError):
    """A conditional append found its stream moved on since the version its decision read."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(f"stream {stream_id}: at version {actual}, not {expected} as read")
