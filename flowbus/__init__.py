"""flowbus: Python workflows as decorated functions, run locally or by agents on NATS queues.

from flowbus import flow, task

@task(retries=3, retry_delay_seconds=5)
def extract(url: str) -> bytes: ...

@flow
def etl(url: str) -> None:
    extract(url)
"""

from flowbus.engine import (
    ConcurrentTaskRunner,
    Flow,
    FlowbusError,
    FlowRun,
    FutureList,
    ParameterValidationError,
    State,
    StateType,
    Task,
    TaskRun,
    TaskRunFuture,
    ThreadPoolTaskRunner,
    UsageError,
    allow_failure,
    exponential_backoff,
    flow,
    get_run_context,
    get_run_logger,
    pause_flow_run,
    tags,
    task,
    task_input_hash,
    unmapped,
    wait,
)
from flowbus.engine import flow_deploy as _flow_deploy
from flowbus.engine.concurrency import set_default_slot_factory as _set_default_slot_factory
from flowbus.engine.sinks import set_default_sink_factory as _set_default_sink_factory
from flowbus.engine.sinks import set_sink_wrapper as _set_sink_wrapper
from flowbus.engine.tracing import traced as _traced
from flowbus.remote.reporting import remote_sink as _remote_sink
from flowbus.remote.slots import remote_slots as _remote_slots

# Runs by hand on a machine with a profile (``flowbus login``) report to that server, and are
# traced when OpenTelemetry is configured (``OTEL_EXPORTER_OTLP_ENDPOINT``).
_set_default_sink_factory(_remote_sink)
# Their concurrency limits (tags, global) are that server's: they bind with every agent's.
_set_default_slot_factory(_remote_slots)
_set_sink_wrapper(_traced)


def _deploy_store() -> object:
    # flow.deploy through the active profile's server, as the CLI deploys (else the store).
    from flowbus.remote.store import configured_store

    return configured_store()


_flow_deploy.store_factory = _deploy_store  # type: ignore[assignment]

__version__ = "0.2.0"

#: Loaded on first use: the client brings nats-py and pydantic, which a flow script may not need.
_LAZY = {
    "Client": "flowbus.client",
    "ClientError": "flowbus.client",
    "Block": "flowbus.engine.blocks",
    "Secret": "flowbus.engine.blocks",
    "JSON": "flowbus.engine.blocks",
    "Webhook": "flowbus.engine.blocks",
    "NatsConnection": "flowbus.engine.blocks",
    "Transaction": "flowbus.engine.transactions",
    "transaction": "flowbus.engine.transactions",
    "resume_flow_run": "flowbus.flow_runs",
    "suspend_flow_run": "flowbus.flow_runs",
    "serve": "flowbus._serving",
}
#: Modules reachable as attributes: ``flowbus.variables.get("region")``.
_MODULES = {"variables": "flowbus.variables", "runtime": "flowbus.runtime"}


def __getattr__(name: str) -> object:
    import importlib

    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flowbus' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "JSON",
    "Block",
    "Client",
    "ClientError",
    "ConcurrentTaskRunner",
    "Flow",
    "FlowRun",
    "FlowbusError",
    "FutureList",
    "NatsConnection",
    "ParameterValidationError",
    "Secret",
    "State",
    "StateType",
    "Task",
    "TaskRun",
    "TaskRunFuture",
    "ThreadPoolTaskRunner",
    "Transaction",
    "UsageError",
    "Webhook",
    "__version__",
    "allow_failure",
    "exponential_backoff",
    "flow",
    "get_run_context",
    "get_run_logger",
    "pause_flow_run",
    "resume_flow_run",
    "runtime",
    "serve",
    "suspend_flow_run",
    "tags",
    "task",
    "task_input_hash",
    "transaction",
    "unmapped",
    "variables",
    "wait",
]
