"""The leader's releases: the runs only the leader publishes, when their time comes and their
deployment's policies allow. A run due later waits for a timer (no polling; the janitor
re-arms the timers of runs read back after a restart); a schedule's run meets its overlap
policy; a run of a deployment with a concurrency limit waits for room, offered the moment one
of the deployment's runs ends (``wake``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from flowbus.agents.background import BackgroundTasks
from flowbus.agents.decisions.controls import decide_cancel_unstarted
from flowbus.agents.decisions.model import ArmTimer, Release
from flowbus.agents.decisions.releases import (
    adopt,
    going,
    held_back,
    limited_release,
    schedule_refusal,
)
from flowbus.agents.ledger import RunLedger, now
from flowbus.agents.orchestrator.deployments import Deployments
from flowbus.agents.orchestrator.executor import Executor
from flowbus.agents.orchestrator.outbox import Outbox
from flowbus.agents.run_entry import RunEntry
from flowbus.engine.states import StateType

log = structlog.get_logger("flowbus.orchestrator")


class Releases:
    """Publishes the runs the leader releases (see the module's docstring)."""

    def __init__(
        self,
        ledger: RunLedger,
        executor: Executor,
        deployments: Deployments,
        outbox: Outbox,
        background: BackgroundTasks,
        leading: Callable[[], bool],
        cancel: Callable[[str], Awaitable[object]],
    ) -> None:
        self.ledger = ledger
        self.executor = executor
        self.deployments = deployments
        self.outbox = outbox
        self.background = background
        self.leading = leading
        #: Cancels a run (as ``flowbus.api.cancel`` does): the overlap policy ``cancel``.
        self.cancel = cancel
        #: Runs made ahead of time whose release timer is set.
        self._armed: set[str] = set()
        #: One check-then-publish of a limited deployment's run at a time: none overtakes.
        self._limited = asyncio.Lock()

    def arm(self, entry: RunEntry) -> None:
        """Release the run when its time comes (a timer, once per run)."""
        if entry.run_id in self._armed:
            return
        self._armed.add(entry.run_id)
        delay = max(0.0, entry.due_at - time.time())
        asyncio.get_running_loop().call_later(delay, self._due, entry.run_id)

    def forget_timers(self) -> None:
        """A deposed leader's timers are its successor's business (they fire harmlessly)."""
        self._armed.clear()

    def _due(self, run_id: str) -> None:
        self._armed.discard(run_id)
        entry = self.ledger.entries.get(run_id)
        if (
            self.leading()
            and entry is not None
            and entry.state is StateType.SCHEDULED
            and not entry.published
        ):
            self.background.spawn(self.release(entry))

    async def release(self, entry: RunEntry) -> None:
        """Publish a run whose time has come; a schedule's run first meets its deployment's
        policies (schedule still active, overlap), a limited deployment's its limit."""
        if entry.schedule_id is not None and entry.queued_seq == 1:
            deployment = await self.deployments.get(entry.deployment)
            refusal, overlapping = schedule_refusal(entry, deployment, self._unfinished())
            for other in overlapping:
                log.info("cancelling an overlapping run", run_id=other, for_run=entry.run_id)
                await self.cancel(other)
            if refusal is not None:
                await self.cancel_unstarted(entry.run_id, refusal)
                return
        deployment = await self.deployments.get(entry.deployment)
        if deployment is None or not deployment.concurrency_limit or entry.queued_seq != 1:
            await self.outbox.publish(entry)
            return
        async with self._limited:  # one check-then-publish at a time: none overtakes
            if entry.state is not StateType.SCHEDULED or entry.published:
                return
            going_now = len(going(entry, self._unfinished()))
            verdict = limited_release(entry, deployment, going_now)
            if isinstance(verdict, str):
                await self.cancel_unstarted(entry.run_id, verdict)
            elif verdict is not None:
                await self.outbox.publish(entry)
            # else: it waits, Scheduled and unpublished, until a run of the deployment ends

    async def cancel_unstarted(self, run_id: str, message: str) -> None:
        """Cancel a run its deployment's policies will not start."""
        await self.executor.take(run_id, lambda e, f, n: decide_cancel_unstarted(e, message, n))
        log.info("scheduled run not started", run_id=run_id, reason=message)

    def wake(self, name: str) -> None:
        """A run of ``name`` ended: its runs held back by the deployment's concurrency limit
        are offered the room, oldest first."""
        deployment = self.deployments.cached(name)
        if deployment is None or not deployment.concurrency_limit:
            return  # no limit, so nothing is held back (a limited release read its deployment)
        for entry in held_back(name, self._unfinished(), time.time()):
            self.background.spawn(self.release(entry))

    def _unfinished(self) -> list[RunEntry]:
        return self.ledger.entries.unfinished()

    def adopt(self, entry: RunEntry) -> None:
        """The leader learns of a run another orchestrator queued (``RunLedger.on_foreign``)."""
        self.background.spawn(self._adopt(entry))

    async def _adopt(self, entry: RunEntry) -> None:
        deployment = await self.deployments.get(entry.deployment)
        effects = adopt(entry, deployment, now())
        if not effects:
            return  # its writer published it
        entry.foreign = False
        entry.mark_unpublished()  # the leader's to release: its writer left it unpublished
        for effect in effects:
            if isinstance(effect, ArmTimer):
                self.arm(entry)
            elif isinstance(effect, Release):
                await self.release(entry)


__all__ = ["Releases"]
