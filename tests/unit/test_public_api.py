"""The names ``flowbus`` exports are its users' vocabulary: changing them is a decision."""

from __future__ import annotations

import flowbus
import flowbus.engine


def test_flowbus_exports() -> None:
    assert sorted(flowbus.__all__) == [
        "Block",
        "Client",
        "ClientError",
        "ConcurrentTaskRunner",
        "Flow",
        "FlowRun",
        "FlowbusError",
        "FutureList",
        "JSON",
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


def test_every_exported_name_exists() -> None:
    for module in (flowbus, flowbus.engine):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_prefect_style_module_paths() -> None:
    from flowbus.task_runners import ThreadPoolTaskRunner
    from flowbus.tasks import exponential_backoff, task_input_hash

    assert ThreadPoolTaskRunner is flowbus.ThreadPoolTaskRunner
    assert exponential_backoff is flowbus.exponential_backoff
    assert task_input_hash is flowbus.task_input_hash


def test_the_client_loads_on_first_use() -> None:
    import subprocess
    import sys

    code = (
        "import sys, flowbus; assert 'nats' not in sys.modules; "
        "assert 'pydantic' not in sys.modules and 'cryptography' not in sys.modules; "
        "flowbus.Client; assert 'nats' in sys.modules; "
        "flowbus.Secret; flowbus.variables.get"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
