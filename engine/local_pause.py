"""Pausing a flow run started by hand: its thread waits in this process until
``resume_flow_run(run_id, run_input=...)`` is called from another thread (or the timeout).

A run of a deployment is parked and taken up again by an agent (``pause.py``); a run started by
hand has no agent to take it up, so, as Prefect does for a flow called in a script, the call
blocks where it is. The run records Paused while it waits and Running once resumed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowbus.engine.errors import FlowbusError, UsageError
from flowbus.engine.event_types import EventType
from flowbus.engine.records import state_dict
from flowbus.engine.states import Paused, Running

if TYPE_CHECKING:
    from pydantic import BaseModel

    from flowbus.engine.context import FlowRunContext


class FlowPauseTimeout(FlowbusError, TimeoutError):
    """A paused run was not resumed within its timeout (Prefect's name for it)."""


@dataclass
class _Waiting:
    model: type[BaseModel] | None
    resumed: threading.Event = field(default_factory=threading.Event)
    given: dict[str, Any] | None = None


_waiting: dict[str, _Waiting] = {}
_lock = threading.Lock()


def pause_here(
    context: FlowRunContext, key: str, timeout: float, model: type[BaseModel] | None
) -> Any:
    """Block this run's thread until it is resumed; its input, validated by ``model``."""
    run_id = context.flow_run.id
    waiting = _Waiting(model)
    with _lock:
        _waiting[run_id] = waiting
    schema = model.model_json_schema() if model is not None else None
    _record(context, Paused(message=f"waiting at {key}"), {"pause_key": key,
                                                          "input_schema": schema})  # fmt: skip
    try:
        if not waiting.resumed.wait(timeout):
            raise FlowPauseTimeout(f"flow run {run_id} was not resumed within {timeout:g} s")
    finally:
        with _lock:
            _waiting.pop(run_id, None)
    _record(context, Running(), None)
    return model.model_validate(waiting.given or {}) if model is not None else None


def resume_here(run_id: str, run_input: dict[str, Any] | None) -> bool:
    """Resume a run paused in this process (True), or say it is not one (False). Input that
    does not validate against the pause's model raises ``UsageError`` and resumes nothing."""
    with _lock:
        waiting = _waiting.get(run_id)
    if waiting is None:
        return False
    if waiting.model is not None:
        from pydantic import ValidationError

        try:
            waiting.model.model_validate(run_input or {})
        except ValidationError as exc:
            raise UsageError(f"input for flow run {run_id} is not valid: {exc}") from exc
    waiting.given = dict(run_input or {})
    waiting.resumed.set()
    return True


def _record(context: FlowRunContext, state: Any, extra: dict[str, Any] | None) -> None:
    fields: dict[str, Any] = {"state": state_dict(state), "result": None}
    if extra:
        fields.update({k: v for k, v in extra.items() if v is not None})
    context.stream.emit(EventType.FLOW_RUN_STATE, fields, state.timestamp_iso)
    context.flow_run.state = state


__all__ = ["FlowPauseTimeout", "pause_here", "resume_here"]
