"""The public names of every module mirrored from Prefect: a ported import line keeps working,
and changing these lists is a decision (docs/prefect.md lists them)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import flowbus

MIRRORED = {
    "flowbus.states": ["AwaitingRetry", "Cached", "Cancelled", "Cancelling", "Completed",
                       "Crashed", "Failed", "Late", "Paused", "Pending", "Retrying", "Running",
                       "Scheduled", "State", "StateType", "TimedOut", "get_state_exception",
                       "is_state_iterable", "raise_state_exception"],
    "flowbus.futures": ["DoneAndNotDoneFutures", "FutureList", "PrefectConcurrentFuture",
                        "PrefectDistributedFuture", "PrefectFuture", "PrefectFutureList",
                        "PrefectWrappedFuture", "TaskRunFuture", "as_completed",
                        "resolve_futures_to_results", "resolve_futures_to_states", "wait"],
    "flowbus.cache_policies": ["DEFAULT", "FLOW_PARAMETERS", "INPUTS", "NO_CACHE", "RUN_ID",
                               "TASK_SOURCE", "CacheKeyFnPolicy", "CachePolicy",
                               "CompoundCachePolicy", "FlowParameters", "Inputs", "RunId",
                               "TaskSource"],
    "flowbus.transactions": ["CommitMode", "IsolationLevel", "Transaction", "TransactionState",
                             "get_transaction", "transaction"],
    "flowbus.artifacts": ["Artifact", "ArtifactView", "create_image_artifact",
                          "create_link_artifact", "create_markdown_artifact",
                          "create_progress_artifact", "create_table_artifact",
                          "update_progress_artifact"],
    "flowbus.runtime": ["deployment", "flow_run", "task_run"],
    "flowbus.context": ["FlowRunContext", "TaskRunContext", "get_run_context", "tags"],
    "flowbus.logging": ["MissingContextError", "disable_run_logger", "get_logger",
                        "get_run_logger"],
    "flowbus.variables": ["Variable", "aget", "aset", "aunset", "get", "set", "unset"],
    "flowbus.blocks": ["Block"],
    "flowbus.blocks.core": ["Block"],
    "flowbus.blocks.system": ["JSON", "DateTime", "Secret", "String"],
    "flowbus.concurrency.sync": ["AcquireConcurrencySlotTimeoutError",
                                 "ConcurrencySlotAcquisitionError", "concurrency", "rate_limit"],
    "flowbus.concurrency.asyncio": ["AcquireConcurrencySlotTimeoutError",
                                    "ConcurrencySlotAcquisitionError", "concurrency",
                                    "rate_limit"],
    "flowbus.events": ["DeploymentEventTrigger", "DeploymentTrigger", "Event", "emit_event"],
    "flowbus.events.schemas.deployment_triggers": ["DeploymentEventTrigger", "DeploymentTrigger"],
    "flowbus.flow_runs": ["pause_flow_run", "resume_flow_run", "suspend_flow_run"],
    "flowbus.deployments": ["DeploymentFlowRun", "run_deployment"],
    "flowbus.exceptions": ["CancelledRun", "ConcurrencySlotAcquisitionError", "CrashedRun",
                           "FailedRun", "FlowPauseTimeout", "FlowbusError", "MissingContextError",
                           "MissingResult",
                           "ObjectNotFound", "ParameterTypeError", "ParameterValidationError",
                           "PrefectException", "TaskRunTimeout", "UnfinishedRun",
                           "UpstreamTaskError", "UsageError"],
    "flowbus.testing.utilities": ["flowbus_test_harness", "prefect_test_harness"],
    "flowbus.task_runners": ["ConcurrentTaskRunner", "DaskTaskRunner", "RayTaskRunner",
                             "TaskRunner", "ThreadPoolTaskRunner"],
    "flowbus.prefect_dask": ["DaskTaskRunner", "get_async_dask_client", "get_dask_client"],
    "flowbus.prefect_ray": ["RayTaskRunner", "remote_options"],
    "flowbus.tasks": ["Task", "allow_failure", "exponential_backoff", "task",
                      "task_input_hash", "unmapped"],
}  # fmt: skip


@pytest.mark.parametrize("module_name", sorted(MIRRORED))
def test_mirrored_module_exports(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(MIRRORED[module_name])
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.{name}"


#: flowbus's own packages (not Prefect's modules): the server's faces, the client, the reads
#: both show, and the links to the engine, broker and agents folders.
OWN_PACKAGES = {"agents", "api", "broker", "cli", "client", "engine", "remote", "views"}


def test_prefects_modules_are_told_apart_from_flowbus_own_at_a_glance() -> None:
    """Every top-level module of flowbus/ is one mirrored from Prefect (its import line ported
    by changing ``prefect`` to ``flowbus``), private (a leading underscore), or a package of
    flowbus's own."""
    root = Path(flowbus.__file__).parent
    mirrored = {name.split(".")[1] for name in MIRRORED}
    for path in sorted(root.iterdir()):
        name = path.stem
        if name.startswith("_") or path.suffix not in ("", ".py") or path.name == "ui":
            continue
        if path.is_dir() and not (path / "__init__.py").exists():
            continue
        assert name in mirrored | OWN_PACKAGES, f"flowbus/{path.name}: Prefect's, or private?"
    assert not mirrored & OWN_PACKAGES


def test_prefects_top_level_names() -> None:
    import flowbus

    for name in ("flow", "task", "Flow", "Task", "State", "tags", "unmapped", "allow_failure",
                 "get_run_logger", "pause_flow_run", "resume_flow_run", "suspend_flow_run",
                 "serve", "Transaction", "runtime"):  # fmt: skip
        assert hasattr(flowbus, name), name


def test_import_flowbus_stays_light() -> None:
    code = (
        "import sys, time; began = time.perf_counter(); import flowbus; "
        "loaded = set(sys.modules); "
        "print(' '.join(m for m in ('nats', 'pydantic', 'fastapi', 'aiosqlite', 'distributed',"
        " 'ray') if m in loaded))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert done.stdout.strip() == ""  # submodules and heavy dependencies load on first use


def test_prefect_test_harness_isolates_the_store(tmp_path: object) -> None:
    import os

    from flowbus import flow
    from flowbus.testing.utilities import prefect_test_harness

    before = os.environ.get("FLOWBUS_HOME")

    @flow
    def tested() -> str:
        return os.environ["FLOWBUS_HOME"]

    with prefect_test_harness():
        inside = tested()
        assert inside != before and os.path.exists(os.path.join(inside, "flowbus.db"))
    assert os.environ.get("FLOWBUS_HOME") == before
