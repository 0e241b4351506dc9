"""Pausing and resuming flow runs, under Prefect's module name (``prefect.flow_runs``).

    from flowbus.flow_runs import pause_flow_run, resume_flow_run

``suspend_flow_run`` is ``pause_flow_run`` here: a paused run of a deployment already holds no
agent slot and no process while it waits, which is what Prefect's suspend adds to its pause.
"""

from __future__ import annotations

from typing import Any

from flowbus._dispatch import dispatch
from flowbus.engine.pause import pause_flow_run

suspend_flow_run = pause_flow_run


async def _resume(flow_run_id: str, run_input: dict[str, Any] | None) -> str:
    from flowbus.client import Client

    async with Client() as client:
        return await client.resume(str(flow_run_id), run_input)


def resume_flow_run(flow_run_id: Any, run_input: dict[str, Any] | None = None) -> Any:
    """Queue a Paused run again with ``run_input`` (validated against its pause's model); the
    run's state after the call (Scheduled). Sync, or awaited from async code. A run started by
    hand and paused in this process continues at once (its state: Running)."""
    from flowbus.engine.local_pause import resume_here

    if resume_here(str(flow_run_id), run_input):
        return dispatch(_now("Running"))
    return dispatch(_resume(flow_run_id, run_input))


async def _now(state: str) -> str:
    return state


__all__ = ["pause_flow_run", "resume_flow_run", "suspend_flow_run"]
