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
    timeout: float = ...,
    wait_for_input: None = None,
    key: str | None = ...,
    poll_interval: float = ...,
) -> None: ...


@overload
def pause_flow_run(
    timeout: float = ...,
    *,
    wait_for_input: type[M],
    key: str | None = ...,
    poll_interval: float = ...,
) -> M: ...


def pause_flow_run(
    timeout: float = 3600,
    wait_for_input: type[BaseModel] | None = None,
    key: str | None = None,
    poll_interval: float = 10,
) -> Any:
    """Park this run as Paused until it is resumed (Failed after ``timeout`` seconds without).

    With ``wait_for_input`` (a pydantic model, or a type such as ``str``), a resume must give
    input that validates against it, and the call returns that input. ``key`` names the pause
    (default: its place among this run's pauses, ``pause-1``, ``pause-2``, ...). A run started
    by hand waits in its thread for ``resume_flow_run`` from another thread of this process
    (``FlowPauseTimeout`` after ``timeout``). ``poll_interval`` is accepted for Prefect's
    signature: a resume wakes the run at once, nothing polls.
    """
    context = flow_run_var.get()
    if context is None or task_run_var.get() is not None:
        raise UsageError("pause_flow_run() is called in a flow's own code (not in a task)")
    with context.counter_lock:
        context.pause_count += 1
        key = key or f"pause-{context.pause_count}"
    model = _input_model(wait_for_input)
    if context.resumes is None:  # started by hand: nobody takes it up again; it waits here
        from flowbus.engine.local_pause import pause_here

        found = pause_here(context, key, timeout, model)
        return _unwrapped(found, wait_for_input)
    if key in context.resumes:
        given = context.resumes[key]
        found = model.model_validate(given or {}) if model is not None else None
        return _unwrapped(found, wait_for_input)
    schema = model.model_json_schema() if model is not None else None
    raise FlowRunPaused(key, timeout, schema)


def _input_model(wait_for_input: Any) -> type[BaseModel] | None:
    """The model input is validated with: the given model, or (for a plain type such as
    ``str``, as Prefect allows) a model of one field, ``value``."""
    if wait_for_input is None:
        return None
    from pydantic import BaseModel, create_model

    if isinstance(wait_for_input, type) and issubclass(wait_for_input, BaseModel):
        return wait_for_input
    made: type[BaseModel] = create_model("RunInput", value=(wait_for_input, ...))
    return made


def _unwrapped(found: Any, wait_for_input: Any) -> Any:
    """What the pause returns: the model, or the plain value of a plain type."""
    if found is None or found.__class__ is wait_for_input:
        return found
    return getattr(found, "value", found)
