"""Cancelled runs whose flow threads are still blocked.

A sync flow's thread cannot be killed: a cancelled run whose thread is blocked (in a call that
does not return) is let go, and its thread counts against the agent's concurrency until it
returns, so an agent never runs more threads than it was given. Heartbeats list these runs.
"""

from __future__ import annotations

import asyncio

import structlog

from flowbus.agents.execution import InProcessRun

log = structlog.get_logger("flowbus.agent")


class AbandonedRuns:
    """The runs let go while their threads are still blocked, each until its thread returns."""

    def __init__(self) -> None:
        self._runs: set[str] = set()
        self._forgetting: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._runs)

    def ids(self) -> list[str]:
        """The runs, sorted (as a heartbeat lists them)."""
        return sorted(self._runs)

    def add(self, run_id: str, execution: InProcessRun) -> None:
        """Count the cancelled run's thread against the concurrency until it returns."""
        log.warning("a cancelled run is still blocked; its thread is abandoned", run_id=run_id)
        self._runs.add(run_id)

        async def forget() -> None:
            await execution.thread_ended.wait()
            self._runs.discard(run_id)
            log.info("an abandoned run's thread returned", run_id=run_id)

        task = asyncio.get_running_loop().create_task(forget())
        self._forgetting.add(task)
        task.add_done_callback(self._forgetting.discard)


__all__ = ["AbandonedRuns"]
