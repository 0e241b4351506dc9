"""The janitor: every ``janitor_interval`` the leader looks at each run it follows and does what
``decisions.sweep_actions`` says (crash an expired lease, fail a timed-out pause, publish or
arm an unpublished run, publish once more a run another orchestrator queued, mark a run Late,
and now and then check that every published request is still in its queue); a follower only
forgets old copies of runs."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from flowbus.agents.decisions import (
    Sweep,
    sweep_actions,
)
from flowbus.agents.ledger import RunEntry
from flowbus.agents.queue_audit import QueueAudit
from flowbus.engine.records import EventRecord
from flowbus.engine.states import (
    Late,
    StateType,
)

log = structlog.get_logger("flowbus.orchestrator")
S = StateType

#: A run another orchestrator queued and still unclaimed after this is published once more by
#: the leader (its writer may have died between its write and its publish).
FOREIGN_GRACE_SECONDS = 3.0


class Janitor(QueueAudit):
    """The leader's periodic sweep."""

    async def _janitor(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except Exception:  # the next sweep tries again
                log.exception("janitor sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.janitor_interval)

    async def sweep(self) -> None:
        """Crash runs whose lease expired, publish what is unpublished, mark late runs (the
        leader); forget old copies of runs (a follower)."""
        now, wall = time.monotonic(), time.time()
        if not self.leadership.leading:
            self.ledger.purge(now)
            return
        for entry in list(self.ledger.entries.values()):
            if not self.leadership.leading:
                return  # the lease ran out mid-sweep
            for action in sweep_actions(
                entry, now, wall, self.settings.late_after, FOREIGN_GRACE_SECONDS
            ):
                await self._carry_out(action, entry)
        self.ledger.purge(now)
        self._audit_if_due(now)
        silent = {
            n for n, a in self.agents.items() if now - a.last_seen > self.settings.lease_seconds
        }
        if silent:  # lost runs they will not ask about again
            self._lost.difference_update({lost for lost in self._lost if lost[0] in silent})
        if silent and self.slots is not None:
            self.slots.reclaim(lambda h: h.agent in silent, "its agent stopped renewing its lease")
        for name in [n for n, a in self.agents.items() if now - a.last_seen > 3600]:
            del self.agents[name]

    async def _carry_out(self, action: Sweep, entry: RunEntry) -> None:
        if action is Sweep.EXPIRE:
            await self._expire(entry.run_id)
        elif action is Sweep.EXPIRE_PAUSE:
            await self._expire_pause(entry.run_id)
        elif action is Sweep.ARM:
            self._arm(entry)
        elif action is Sweep.RELEASE:
            await self._release(entry)
        elif action is Sweep.REPUBLISH:
            # Once: its writer may have died before it published. Not known to be published
            # until this publish is acked: a failed one is released again by the next sweep.
            entry.foreign, entry.published = False, False
            await self._dispatch(entry)
        elif action is Sweep.MARK_LATE:
            await self._mark_late(entry.run_id)

    async def _mark_late(self, run_id: str) -> None:
        async def decide(entry: RunEntry | None) -> tuple[None, list[EventRecord]]:
            if entry is None or entry.state is not S.SCHEDULED or entry.state_name == "Late":
                return None, []
            waited = time.time() - entry.queued_at
            message = f"not started {waited:.0f} s after it was queued"
            return None, [self.ledger.record_state(entry, Late(message=message), **self._term())]

        await self.ledger.transact(run_id, decide)
