"""The janitor: every ``janitor_interval`` the leader looks at each run it follows and does what
``decisions.sweeps.sweep_actions`` says (crash an expired lease, fail a timed-out pause,
publish or arm an unpublished run, publish once more a run another orchestrator queued, mark
a run Late), now and then audits the queues, and reclaims what silent agents held; a
follower only forgets old copies of runs."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from flowbus.agents.decisions.claims import decide_expiry
from flowbus.agents.decisions.controls import decide_mark_late, decide_pause_expiry
from flowbus.agents.decisions.model import Facts
from flowbus.agents.decisions.sweeps import Sweep, sweep_actions
from flowbus.agents.ledger import RunLedger
from flowbus.agents.orchestrator.agents_seen import AgentsSeen
from flowbus.agents.orchestrator.executor import Executor
from flowbus.agents.orchestrator.outbox import Outbox
from flowbus.agents.orchestrator.queue_audit import QueueAudit
from flowbus.agents.orchestrator.releases import Releases
from flowbus.agents.orchestrator.settings import OrchestratorSettings
from flowbus.agents.run_entry import RunEntry
from flowbus.agents.slot_service import SlotService

log = structlog.get_logger("flowbus.orchestrator")

#: A run another orchestrator queued and still unclaimed after this is published once more by
#: the leader (its writer may have died between its write and its publish).
FOREIGN_GRACE_SECONDS = 3.0


class Janitor:
    """The leader's periodic sweep (``sweep``), run by the orchestrator's loop."""

    def __init__(
        self,
        settings: OrchestratorSettings,
        ledger: RunLedger,
        executor: Executor,
        releases: Releases,
        outbox: Outbox,
        audit: QueueAudit,
        agents: AgentsSeen,
        leading: Callable[[], bool],
        term: Callable[[], int | None],
        slots: Callable[[], SlotService | None],
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.executor = executor
        self.releases = releases
        self.outbox = outbox
        self.audit = audit
        self.agents = agents
        self.leading = leading
        self.term = term
        self.slots = slots

    async def sweep(self) -> None:
        """Crash runs whose lease expired, publish what is unpublished, mark late runs (the
        leader); forget old copies of runs (a follower)."""
        now, wall = time.monotonic(), time.time()
        if not self.leading():
            self.ledger.purge(now)
            return
        late, grace = self.settings.late_after, FOREIGN_GRACE_SECONDS
        for entry in self.ledger.entries.unfinished():
            if not self.leading():
                return  # the lease ran out mid-sweep
            for action in sweep_actions(entry, now, wall, late, grace):
                await self._carry_out(action, entry)
        self.ledger.purge(now)
        self.audit.start_if_due(now)
        silent = self.agents.forget_silent(now)
        slots = self.slots()
        if silent and slots is not None:
            slots.reclaim(lambda h: h.agent in silent, "its agent stopped renewing its lease")
        if slots is not None:
            slots.reclaim_silent_hands(self.settings.lease_seconds)

    async def _carry_out(self, action: Sweep, entry: RunEntry) -> None:
        facts = Facts(leading=True, term=self.term())
        if action is Sweep.EXPIRE:
            await self.executor.take(entry.run_id, decide_expiry, facts)
        elif action is Sweep.EXPIRE_PAUSE:
            await self.executor.take(
                entry.run_id, lambda run, _, now: decide_pause_expiry(run, now, facts.term)
            )
        elif action is Sweep.ARM:
            self.releases.arm(entry)
        elif action is Sweep.RELEASE:
            await self.releases.release(entry)
        elif action is Sweep.REPUBLISH:
            # Once: its writer may have died before it published.
            await self.outbox.publish_again(entry)
        elif action is Sweep.MARK_LATE:
            await self.executor.take(
                entry.run_id, lambda run, _, now: decide_mark_late(run, now, facts.term)
            )


__all__ = ["FOREIGN_GRACE_SECONDS", "Janitor"]
