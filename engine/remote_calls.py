"""A task's function called on another machine (a Dask or Ray worker), the rest of its run here.

With a distributed task runner, the flow's process keeps everything that makes a task run:
its states and events, retries and their delays, timeouts, caching and durable results, tag
concurrency slots. Only the call of the task's function goes to a worker, as a ``RemoteCall``:
the function (pickled by value when its module is not importable there), its arguments, and
what ``get_run_logger()`` and ``log_prints`` need. ``call_remotely`` runs on the worker: it
sets up the run's context with a stream that keeps what the function logs, calls the function,
and returns a ``RemoteOutcome``: the value or the exception with its traceback as text, the
log lines with their times, and the worker that ran it. The engine then records the lines in
the run's stream, the worker on the task run's final state, and raises the exception as if
the function had raised it here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import linecache
import re
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any, cast

import cloudpickle

from flowbus.engine.context import (
    FlowRun,
    FlowRunContext,
    RunStream,
    TaskRun,
    TaskRunContext,
    flow_run_var,
    task_run_var,
)
from flowbus.engine.sinks import ListSink

#: What an event carries besides its fields (made again when the flow's stream records it).
ENVELOPE = frozenset({"schema_version", "id", "stream_id", "seq", "occurred", "type"})


@dataclasses.dataclass
class RemoteCall:
    """One call of a task's function, as sent to a worker."""

    fn: Callable[..., Any]
    is_async: bool
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    flow_run: FlowRun
    task_run: TaskRun
    task: Any
    parameters: dict[str, Any]
    log_prints: bool


@dataclasses.dataclass
class RemoteOutcome:
    """What a worker sends back: ``value``, or ``error`` and its ``traceback``; the events the
    call recorded (log lines) as ``(type, fields, occurred)``; the worker that ran it."""

    value: Any = None
    error: BaseException | None = None
    traceback: str | None = None
    events: list[tuple[str, dict[str, Any], str]] = dataclasses.field(default_factory=list)
    worker: str = ""


class RemoteTraceback(Exception):
    """The traceback of an exception raised on a worker (the ``__cause__`` of the exception the
    flow sees, as ``concurrent.futures`` does for a process pool)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class RemoteTaskError(Exception):
    """A task's exception that could not be sent back as itself (it does not pickle)."""


def worker_name() -> str:
    """The worker's address (as Dask's scheduler knows it) or Ray node, and its host."""
    host = socket.gethostname()
    with contextlib.suppress(ImportError, ValueError):
        from distributed import get_worker

        return f"{get_worker().address} ({host})"
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            return f"ray node {ray.get_runtime_context().get_node_id()[:12]} ({host})"
    return host


def call_remotely(call: RemoteCall) -> RemoteOutcome:
    """Run ``call`` here (on a worker); never raises, the outcome says what happened."""
    from flowbus.engine.run_logging import install_print_capture
    from flowbus.engine.task_runners import ConcurrentTaskRunner

    install_print_capture()
    kept = ListSink()  # what the call records, sent back with its outcome
    stream = RunStream(call.flow_run.id, kept)
    flow_ctx = FlowRunContext(cast(Any, None), call.flow_run, stream, ConcurrentTaskRunner(),
                              call.log_prints)  # fmt: skip
    task_ctx = TaskRunContext(call.task, call.task_run, flow_ctx, call.parameters,
                              call.log_prints, (call.args, call.kwargs))  # fmt: skip
    flow_token, task_token = flow_run_var.set(flow_ctx), task_run_var.set(task_ctx)
    outcome = RemoteOutcome(worker=worker_name())
    try:
        if call.is_async:
            outcome.value = asyncio.run(call.fn(*call.args, **call.kwargs))
        else:
            outcome.value = call.fn(*call.args, **call.kwargs)
    except BaseException as exc:  # sent back: the flow decides (retries, failure)
        outcome.error = _sendable(exc)
        outcome.traceback = "".join(traceback.format_exception(exc))
    finally:
        task_run_var.reset(task_token)
        flow_run_var.reset(flow_token)
    outcome.events = [
        (r.type, {k: v for k, v in r.data.items() if k not in ENVELOPE}, r.data["occurred"])
        for r in kept.records
    ]
    return outcome


def _sendable(exc: BaseException) -> BaseException:
    """The exception itself when it pickles (the flow can catch its type), else its repr."""
    try:
        cloudpickle.loads(cloudpickle.dumps(exc))  # trusted: bytes this line just made
    except Exception:
        return RemoteTaskError(f"{type(exc).__qualname__}: {exc}")
    return exc


def raise_outcome(outcome: RemoteOutcome) -> Any:
    """The call's value, or its exception raised here with the worker's traceback as cause."""
    if outcome.error is None:
        return outcome.value
    error = outcome.error
    if isinstance(error, KeyboardInterrupt | SystemExit):
        error = RemoteTaskError(f"{type(error).__name__} on worker {outcome.worker}")
    raise error from RemoteTraceback(f'\n"""\non worker {outcome.worker}:\n{outcome.traceback}"""')


_DYNAMIC_FRAME = re.compile(r'^  File "<dynamic-code>", line (\d+), in (\w+)$')


def localized_traceback(text: str, fn: Callable[..., Any]) -> str:
    """A worker's traceback with the frames of ``fn``'s module named as here: cloudpickle sends
    a module by value without its file name (``<dynamic-code>``), so those frames get the file
    and the source line back when the module defines a function of that name."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    if not path:
        return text
    lines = []
    for line in text.splitlines(keepends=True):
        frame = _DYNAMIC_FRAME.match(line.rstrip("\n"))
        if frame and callable(getattr(module, frame.group(2), None)):
            number = int(frame.group(1))
            lines.append(f'  File "{path}", line {number}, in {frame.group(2)}\n')
            source = linecache.getline(path, number).strip()
            if source:
                lines.append(f"    {source}\n")
            continue
        lines.append(line)
    return "".join(lines)


def pickled_by_value(fn: Callable[..., Any], pickler: Any) -> None:
    """Have ``pickler`` (cloudpickle, or Ray's copy of it) send ``fn``'s module by value when
    workers may not import it: a flow file loaded from its path (an agent's entrypoint, a
    script) is not on their path."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    if module is None or module.__name__ in ("__main__", "builtins"):
        return  # __main__ goes by value anyway
    path = getattr(module, "__file__", None) or ""
    if "site-packages" in path or "dist-packages" in path or module.__name__.startswith("flowbus"):
        return  # installed: importable on every worker of the same environment
    pickler.register_pickle_by_value(module)


__all__ = [
    "RemoteCall",
    "RemoteOutcome",
    "RemoteTaskError",
    "RemoteTraceback",
    "call_remotely",
    "localized_traceback",
    "pickled_by_value",
    "raise_outcome",
]
