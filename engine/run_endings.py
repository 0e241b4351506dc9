"""What ends a run, for tasks and flows alike: the message and traceback of a failure, the
final state a returned state stands for, and the state hooks called at the end."""

from __future__ import annotations

import inspect
import logging
import traceback
from typing import Any

from flowbus.engine.run_logging import record_log
from flowbus.engine.states import Failed, State


def failure_details(exc: BaseException) -> tuple[str, str]:
    """A state message and a traceback for an exception."""
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return message, "".join(traceback.format_exception(exc))


def returned_state(state: State) -> State:
    """A state a task or flow returned, as its final state (Prefect's behaviour): a non-final
    one counts as Failed, a final one is taken as it is."""
    if state.is_final():
        return state
    return Failed(message=f"the run returned a non-final state {state!r}")


async def run_hooks(hooks: list[Any], owner: Any, run: Any, state: State) -> None:
    """Call state hooks in order; a failing hook is logged and does not change the state."""
    for hook in hooks:
        try:
            outcome = hook(owner, run, state)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            name = getattr(hook, "__name__", repr(hook))
            record_log(logging.ERROR, "flowbus.engine", f"hook {name} raised {exc!r}")


__all__ = ["failure_details", "returned_state", "run_hooks"]
