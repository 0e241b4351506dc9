"""Pausing a flow run: ``pause_flow_run()`` parks a run of a deployment as Paused, and the agent
that ran it moves on (no slot is held while it waits). ``flowbus runs resume RUN_ID`` (or the
UI, or ``Client.resume``) queues it again; an agent runs the flow again from its start, and
this time the same ``pause_flow_run`` call returns at once, with the input given to the resume.

Work done before the pause is done again unless its tasks are cached (``cache_key_fn``) or the
flow checks for it, as with any retry; put the pause early, or make what comes before it
idempotent.

    class Approval(BaseModel):
        approved: bool
        note: str = ""

    @flow
    def publish_report() -> None:
        draft = build_draft()
        answer = pause_flow_run(timeout=3600, wait_for_input=Approval)
        if answer.approved:
            send(draft)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, overload

from flowbus.engine.context import flow_run_var, task_run_var
from flowbus.engine.errors import UsageError

if TYPE_CHECKING:  # pydantic is imported by whoever passes a model: `import flowbus` stays light
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")


class FlowRunPaused(BaseException):
    """Unwinds a flow whose run is parked (a BaseException: ``except Exception`` in user code
    does not swallow it)."""

    def __init__(self, key: str, timeout: float, input_schema: dict[str, Any] | None) -> None:
        super().__init__(f"paused at {key}")
        self.key = key
        self.timeout = timeout
        self.input_schema = input_schema


@overload
def pause_flow_run(
    timeout: float = ..., wait_for_input: None = None, key: str | None = ...
) -> None: ...


@overload
def pause_flow_run(
    timeout: float = ..., *, wait_for_input: type[M], key: str | None = ...
) -> M: ...


def pause_flow_run(
    timeout: float = 3600, wait_for_input: type[BaseModel] | None = None, key: str | None = None
) -> Any:
    """Park this run as Paused until it is resumed (Failed after ``timeout`` seconds without).

    With ``wait_for_input`` (a pydantic model), a resume must give input that validates against
    it, and the call returns that input as the model. ``key`` names the pause (default: its
    place among this run's pauses, ``pause-1``, ``pause-2``, ...).
    """
    context = flow_run_var.get()
    if context is None or task_run_var.get() is not None:
        raise UsageError("pause_flow_run() is called in a flow's own code (not in a task)")
    if context.resumes is None:
        raise UsageError(
            "pause_flow_run() parks a run of a deployment for an agent to take up again; this "
            "run was started by hand (run it with flowbus run, or from the UI)"
        )
    with context.counter_lock:
        context.pause_count += 1
        key = key or f"pause-{context.pause_count}"
    if key in context.resumes:
        given = context.resumes[key]
        return wait_for_input.model_validate(given or {}) if wait_for_input else None
    schema = wait_for_input.model_json_schema() if wait_for_input is not None else None
    raise FlowRunPaused(key, timeout, schema)
