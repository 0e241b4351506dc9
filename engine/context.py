"""Run context in ``contextvars``: which flow run and task run the current code belongs to."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowbus.engine.clock import now_iso
from flowbus.engine.errors import MissingContextError
from flowbus.engine.ids import event_id, stream_id_prefix
from flowbus.engine.interrupts import Interrupt
from flowbus.engine.records import make_record
from flowbus.engine.secrets import scrub
from flowbus.engine.sinks import EventSink
from flowbus.engine.states import State

if TYPE_CHECKING:
    from flowbus.engine.flows import Flow
    from flowbus.engine.futures import TaskRunFuture
    from flowbus.engine.replay import ReplayTable
    from flowbus.engine.task_runners import TaskRunner
    from flowbus.engine.tasks import Task


class RunStream:
    """A flow run's event stream: numbers each event (1, 2, 3, ...) and hands it to the sink.

    Numbering and handing over happen under one lock, so the sink sees events in sequence order
    even when tasks in several threads emit at once.
    """

    __slots__ = ("_id_prefix", "_lock", "_seq", "run_id", "sink")

    def __init__(self, run_id: str, sink: EventSink, start_seq: int = 0) -> None:
        self.run_id = run_id
        self.sink = sink
        self._seq = start_seq  # a run continued from a claim goes on after the claim's event
        self._lock = threading.Lock()
        # Random per RunStream, so two attempts at one run (say a zombie agent's and its
        # successor's) never share an event id, nor the Nats-Msg-Id that deduplicates it.
        self._id_prefix = stream_id_prefix()

    def emit(self, type_: str, fields: dict[str, Any], occurred: str | None = None) -> None:
        """Record an event; ``occurred`` defaults to now (a state event passes its state's time)."""
        record = make_record(self.run_id, 0, type_, scrub(fields), occurred, "")
        with self._lock:  # as short as can be: tasks in many threads emit into one stream
            self._seq = seq = self._seq + 1
            data = record.data
            record.seq = data["seq"] = seq
            record.id = data["id"] = event_id(self._id_prefix, seq)
            self.sink.emit(record)

    @property
    def seq(self) -> int:
        """The sequence number of the last event emitted."""
        return self._seq


@dataclass
class FlowRun:
    """What a flow run is, as user code (hooks, templates) sees it."""

    id: str
    name: str
    flow_name: str
    parameters: dict[str, Any]
    tags: list[str]
    parent_run_id: str | None = None
    parent_task_run_id: str | None = None
    run_count: int = 0
    state: State | None = None
    #: ``flow/deployment`` of a run an agent took from a queue; None for a run by hand.
    deployment: str | None = None
    #: When the run was created or, for a scheduled one, when it was due.
    expected_start_time: str = field(default_factory=now_iso)


@dataclass
class TaskRun:
    """What a task run is, as user code (hooks, retry conditions, cache keys) sees it.

    ``created`` is when it was called or submitted: the time of its Pending state, so the wait
    of a submitted task run for a free worker shows in its history.
    """

    id: str
    name: str
    task_key: str
    flow_run_id: str
    tags: list[str]
    map_index: int | None = None
    run_count: int = 0
    state: State | None = None
    created: str = field(default_factory=now_iso)
    #: The n-th call of its task in the flow body's current try (its identity for replay).
    position: int = 0


@dataclass
class FlowRunContext:
    flow: Flow[..., Any]
    flow_run: FlowRun
    stream: RunStream
    task_runner: TaskRunner
    log_prints: bool
    submitted: list[TaskRunFuture[Any]] = field(default_factory=list)
    name_counters: dict[str, int] = field(default_factory=dict)
    counter_lock: threading.Lock = field(default_factory=threading.Lock)
    #: Inputs of the pauses already resumed, by pause key; None for a run started by hand
    #: (which cannot be paused: nobody would take it up again).
    resumes: dict[str, Any] | None = None
    pause_count: int = 0
    #: Whether task results are recorded with their events (deployed runs, and runs by hand
    #: that opt in), and the completed task runs a call may replay (see ``replay``).
    record_results: bool = False
    replay: ReplayTable | None = None
    #: The claim's attempt of a deployed run (0 for a run by hand).
    attempt: int = 0
    #: Calls of each task in the current try of the flow body (reset when it is retried).
    positions: dict[str, int] = field(default_factory=dict)
    #: Set when the run is cancelled or handed back: its tasks' retry delays end at once.
    interrupt: Interrupt = field(default_factory=Interrupt)

    @classmethod
    def get(cls) -> FlowRunContext | None:
        """The current flow run's context, or None outside a flow run."""
        return flow_run_var.get()

    def next_index(self, task_key: str) -> tuple[int, int]:
        """A per-task counter that names task runs ``name-0``, ``name-1``, ... in this flow run,
        and the call's position in the current try (its identity for replay)."""
        with self.counter_lock:
            index = self.name_counters.get(task_key, 0)
            self.name_counters[task_key] = index + 1
            position = self.positions.get(task_key, 0)
            self.positions[task_key] = position + 1
            return index, position


@dataclass
class TaskRunContext:
    task: Task[..., Any]
    task_run: TaskRun
    flow_run_context: FlowRunContext
    parameters: dict[str, Any]
    log_prints: bool
    #: The call's (args, kwargs), bound to ``parameters`` on demand (binding costs per call).
    arguments: tuple[tuple[Any, ...], dict[str, Any]] | None = None

    def bound_parameters(self) -> dict[str, Any]:
        """The task run's parameters by name."""
        if not self.parameters and self.arguments is not None:
            self.parameters = self.task.parameters.bind(*self.arguments)
        return self.parameters

    @classmethod
    def get(cls) -> TaskRunContext | None:
        """The current task run's context, or None outside a task run."""
        return task_run_var.get()


flow_run_var: ContextVar[FlowRunContext | None] = ContextVar("flowbus_flow_run", default=None)
task_run_var: ContextVar[TaskRunContext | None] = ContextVar("flowbus_task_run", default=None)


#: Tags added by ``with tags(...)`` to the flow runs and task runs created inside it.
tags_var: ContextVar[tuple[str, ...]] = ContextVar("flowbus_tags", default=())


def get_run_context() -> FlowRunContext | TaskRunContext:
    """The innermost run context: the task run's inside a task, else the flow run's.

    Raises ``MissingContextError`` outside any flow or task run (as Prefect does).
    """
    context = task_run_var.get() or flow_run_var.get()
    if context is None:
        raise MissingContextError(
            "No run context available. You are not in a flow or task run context."
        )
    return context


@contextmanager
def tags(*names: str) -> Iterator[set[str]]:
    """Add tags to every flow run and task run created inside the block (nests)."""
    current = tags_var.get()
    token = tags_var.set(tuple(dict.fromkeys([*current, *names])))
    try:
        yield set(tags_var.get())
    finally:
        tags_var.reset(token)
