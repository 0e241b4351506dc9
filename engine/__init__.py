"""What a run is: flows, tasks, parameters, states and their rules, events, and the store."""

from flowbus.engine.caching import task_input_hash
from flowbus.engine.context import FlowRun, TaskRun, get_run_context, tags
from flowbus.engine.errors import (
    FlowbusError,
    MissingResult,
    ParameterValidationError,
    SequenceError,
    StoreError,
    TaskRunTimeout,
    TransitionRejected,
    UnfinishedRun,
    UsageError,
)
from flowbus.engine.flows import Flow, flow
from flowbus.engine.futures import FutureList, TaskRunFuture, wait
from flowbus.engine.inputs import allow_failure, unmapped
from flowbus.engine.pause import pause_flow_run
from flowbus.engine.retries import exponential_backoff
from flowbus.engine.run_logging import get_run_logger
from flowbus.engine.sinks import EventSink, use_sink
from flowbus.engine.states import State, StateType
from flowbus.engine.task_engine import UpstreamTaskError
from flowbus.engine.task_runners import ConcurrentTaskRunner, TaskRunner, ThreadPoolTaskRunner
from flowbus.engine.tasks import Task, task

__all__ = [
    "ConcurrentTaskRunner",
    "EventSink",
    "Flow",
    "FlowRun",
    "FlowbusError",
    "FutureList",
    "MissingResult",
    "ParameterValidationError",
    "SequenceError",
    "State",
    "StateType",
    "StoreError",
    "Task",
    "TaskRun",
    "TaskRunFuture",
    "TaskRunTimeout",
    "TaskRunner",
    "ThreadPoolTaskRunner",
    "TransitionRejected",
    "UnfinishedRun",
    "UpstreamTaskError",
    "UsageError",
    "allow_failure",
    "exponential_backoff",
    "flow",
    "get_run_context",
    "get_run_logger",
    "pause_flow_run",
    "tags",
    "task",
    "task_input_hash",
    "unmapped",
    "use_sink",
    "wait",
]
