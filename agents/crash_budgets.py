"""Each deployment's crash-recovery budget: how often a run of it whose agent or process died
is queued again before it ends Crashed (``flowbus deploy --crash-retries N``). Read from the
deployment's stream once, kept until a redeploy says to forget it."""

from __future__ import annotations

from flowbus.engine.deployments import DEFAULT_CRASH_RETRIES, deployment_id
from flowbus.engine.events import DeploymentSaved
from flowbus.engine.store import EventStore


class CrashBudgets:
    """Deployments' crash budgets, read from ``store`` on first use."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._known: dict[str, int] = {}

    async def of(self, deployment: str) -> int:
        """The deployment's budget (read from the store the first time)."""
        budget = self._known.get(deployment)
        if budget is None:
            events = await self.store.read_stream(deployment_id(deployment))
            saved = events[-1].typed() if events else None
            budget = saved.crash_retries if isinstance(saved, DeploymentSaved) else None
            if budget is None:
                budget = DEFAULT_CRASH_RETRIES
            self._known[deployment] = budget
        return budget

    def known(self, deployment: str) -> int:
        """The budget as already read (the default if it was not): no store read."""
        return self._known.get(deployment, DEFAULT_CRASH_RETRIES)

    def forget(self, deployment: str) -> None:
        """A redeploy may change it: read it again next time."""
        self._known.pop(deployment, None)


__all__ = ["CrashBudgets"]
