"""Running deployments from code, under Prefect's module name (``prefect.deployments``).

from flowbus.deployments import run_deployment

run = run_deployment("etl-flow/nightly", parameters={"day": "2026-11-30"}, timeout=600)
assert run.state.is_completed()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowbus._dispatch import dispatch
from flowbus.engine.states import State, StateType


@dataclass
class DeploymentFlowRun:
    """A run started by ``run_deployment``: its id and name, and its state when the call
    returned (Scheduled when it did not wait, or the wait timed out first). A Completed
    state holds the flow's value: ``run.state.result()``."""

    id: str
    name: str
    deployment: str
    parameters: dict[str, Any] = field(default_factory=dict)
    state: State | None = None


async def _run(
    name: str,
    parameters: dict[str, Any] | None,
    scheduled_time: datetime | None,
    wait_seconds: float | None,
    tags: list[str] | None,
    idempotency_key: str | None,
) -> DeploymentFlowRun:
    from flowbus.client import Client, ClientError

    async with Client() as client:
        submitted = await client.submit(
            name, parameters, idempotency_key, tags or (), scheduled_time=scheduled_time
        )
        run = DeploymentFlowRun(submitted.run_id, submitted.name, name, dict(parameters or {}),
                                State(StateType.SCHEDULED))  # fmt: skip
        if wait_seconds == 0:
            return run
        try:
            final = await client.wait(submitted.run_id, wait_seconds)
        except TimeoutError:
            return run
        run.state = State(StateType(final.type), final.name, final.message)
        if final.completed:  # ``run.state.result()`` gives the flow's value, as in Prefect
            try:
                value = await client.result(submitted.run_id)
            except ClientError:  # stored where this process cannot read: no data, said so
                return run
            run.state = State(StateType.COMPLETED, final.name, final.message, data=value)
        return run


def run_deployment(
    name: str,
    parameters: dict[str, Any] | None = None,
    scheduled_time: datetime | None = None,
    timeout: float | None = None,
    tags: list[str] | None = None,
    idempotency_key: str | None = None,
    **ignored: Any,
) -> Any:
    """Queue a run of deployment ``name`` (``flow-name/deployment-name``) and wait up to
    ``timeout`` seconds (None: until it ends; 0: not at all) for its final state. Bad
    parameters or an unknown deployment raise ``ClientError`` before anything is queued.

    Sync, or awaited from async code. Prefect's ``flow_run_name``, ``work_queue_name``,
    ``as_subflow``, ``job_variables`` and ``poll_interval`` are accepted and have no effect.
    """
    del ignored
    return dispatch(_run(name, parameters, scheduled_time, timeout, tags, idempotency_key))


__all__ = ["DeploymentFlowRun", "run_deployment"]
