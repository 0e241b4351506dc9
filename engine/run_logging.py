"""Run logs: ``get_run_logger()`` and captured ``print`` become log events of the run.

Each line is recorded as a ``log`` event in the flow run's stream and shown on stderr.
"""

from __future__ import annotations

import builtins
import logging
import sys
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from flowbus.engine import settings
from flowbus.engine.context import FlowRunContext, TaskRunContext, flow_run_var, task_run_var
from flowbus.engine.errors import MissingContextError
from flowbus.engine.event_types import EventType
from flowbus.engine.secrets import known_secrets, redact

_LEVELS = logging.getLevelNamesMapping()


def console_level() -> int:
    """``$FLOWBUS_LOGGING_LEVEL`` (default INFO): the lowest level shown and recorded."""
    return _LEVELS.get(settings.logging_level(), logging.INFO)


def console(level: int, who: str, message: str) -> None:
    """One line on stderr, formatted as flowbus's run log lines are."""
    if level < console_level():
        return
    now = datetime.now().strftime("%H:%M:%S.%f")[:-3]
    line = f"{now} | {logging.getLevelName(level):<7} | {who} - {message}\n"
    sys.stderr.write(redact(line))


def _who(flow_ctx: FlowRunContext, task_ctx: TaskRunContext | None) -> str:
    if task_ctx is not None:
        return f"Task run {task_ctx.task_run.name!r}"
    return f"Flow run {flow_ctx.flow_run.name!r}"


def record_log(level: int, logger: str, message: str) -> None:
    """Record ``message`` as a log event of the current run and show it on the console."""
    task_ctx = task_run_var.get()
    flow_ctx = task_ctx.flow_run_context if task_ctx else flow_run_var.get()
    if flow_ctx is None:
        console(level, logger, message)
        return
    flow_ctx.stream.emit(
        EventType.LOG,
        {
            "task_run_id": task_ctx.task_run.id if task_ctx else None,
            "level": level,
            "logger": logger,
            "message": message,
        },
    )
    console(level, _who(flow_ctx, task_ctx), message)


def _to_run_log(_: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
    """structlog's last processor: record the line and return it for the wrapped logger."""
    name = event_dict.pop("logger_name", "flowbus")
    event_dict.pop("flow_run_id", None)
    event_dict.pop("task_run_id", None)
    event = str(event_dict.pop("event", ""))
    extras = " ".join(f"{key}={value!r}" for key, value in event_dict.items())
    message = f"{event} {extras}" if extras else event
    level = _LEVELS.get(method.upper(), logging.INFO)
    record_log(level, name, message)
    return message


class _Discard:
    """The wrapped logger: the processor already recorded and printed the line."""

    def msg(self, message: str) -> None:
        return None

    debug = info = warning = warn = error = critical = exception = fatal = msg


def get_run_logger(name: str = "flowbus.run", **bindings: Any) -> Any:
    """A structlog logger bound to the current run; its lines are stored with the run.

    Raises ``MissingContextError`` outside a flow or task run, except inside
    ``disable_run_logger()``, where it gives a logger that drops every line.
    """
    task_ctx = task_run_var.get()
    flow_ctx = task_ctx.flow_run_context if task_ctx else flow_run_var.get()
    if flow_ctx is None:
        if _disabled.get():
            return _silent_logger()
        raise MissingContextError("get_run_logger() works inside a flow or task run only")
    import structlog

    logger = structlog.wrap_logger(
        _Discard(),
        processors=[structlog.contextvars.merge_contextvars, _to_run_log],
        wrapper_class=structlog.make_filtering_bound_logger(console_level()),
        logger_name=name,
        flow_run_id=flow_ctx.flow_run.id,
    )
    if task_ctx is not None:
        logger = logger.bind(task_run_id=task_ctx.task_run.id)
    return logger.bind(**bindings) if bindings else logger


_disabled: ContextVar[bool] = ContextVar("flowbus_run_logger_disabled", default=False)


def _silent_logger() -> logging.Logger:
    logger = logging.getLogger("flowbus.null")
    logger.disabled = True
    return logger


@contextmanager
def disable_run_logger() -> Iterator[None]:
    """Call a task's or flow's function outside a run (``my_task.fn()`` in a unit test) without
    ``get_run_logger()`` raising: its lines are dropped."""
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


def get_logger(name: str | None = None) -> logging.Logger:
    """A standard-library logger under ``flowbus`` (not tied to a run)."""
    return logging.getLogger(f"flowbus.{name}" if name else "flowbus")


_original_print = builtins.print
_install_lock = threading.Lock()


def _capturing_print(
    *args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
) -> None:
    task_ctx = task_run_var.get()
    flow_ctx = flow_run_var.get()
    wanted = task_ctx.log_prints if task_ctx else (flow_ctx.log_prints if flow_ctx else False)
    if wanted and file in (None, sys.stdout):
        record_log(logging.INFO, "flowbus.print", (sep or " ").join(str(a) for a in args))
        return
    if known_secrets() and file in (None, sys.stdout, sys.stderr):
        args = tuple(redact(str(a)) for a in args)  # a process that loaded secrets masks them
    _original_print(*args, sep=sep, end=end, file=file, flush=flush)


def install_print_capture() -> None:
    """Route ``print`` to run logs for runs with ``log_prints=True``, and mask known secrets in
    what it prints to the console (other code is untouched)."""
    with _install_lock:
        if builtins.print is not _capturing_print:
            builtins.print = _capturing_print
