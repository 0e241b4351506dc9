"""Claims, hand-backs and heartbeats: an agent claims a run (a new attempt opens, fenced by
its number), renews its lease by heartbeat, and gives it back (its process died, it was
cancelled, the agent is stopping). The decisions are ``decisions.claims``'."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from flowbus.agents.background import BackgroundTasks
from flowbus.agents.decisions.claims import (
    ClaimReply,
    decide_claim,
    decide_heartbeat,
    decide_release,
)
from flowbus.agents.decisions.model import UNREAD, Facts
from flowbus.agents.ledger import RunLedger
from flowbus.agents.orchestrator.agents_seen import AgentsSeen
from flowbus.agents.orchestrator.deployments import Deployments
from flowbus.agents.orchestrator.executor import Executor
from flowbus.agents.run_entry import held_by
from flowbus.agents.slot_service import SlotService
from flowbus.broker import protocol as p
from flowbus.broker.fencing import FenceChecker
from flowbus.engine.faults import crash_point

log = structlog.get_logger("flowbus.orchestrator")


class Claims:
    """Answers ``flowbus.agent.claim``, ``.release`` and ``.heartbeat``."""

    def __init__(
        self,
        executor: Executor,
        ledger: RunLedger,
        deployments: Deployments,
        agents: AgentsSeen,
        background: BackgroundTasks,
        leading: Callable[[], bool],
        slots: Callable[[], SlotService | None],
        lease_seconds: float,
        fences: FenceChecker,
    ) -> None:
        self.executor = executor
        #: Grants each claim's attempt key (its agent signs the run's events with it).
        self.fences = fences
        self.ledger = ledger
        self.deployments = deployments
        self.agents = agents
        self.background = background
        self.leading = leading
        #: The leader's slot grants (None while not leading).
        self.slots = slots
        self.lease_seconds = lease_seconds

    async def claim(self, request: p.ClaimRequest) -> ClaimReply:
        # The run's deployment, read before the run's lock when the run is known here.
        known = self.ledger.entries.get(request.run_id)
        deployment = await self.deployments.get(known.deployment) if known else UNREAD
        verdict, entry = await self.executor.decide(
            request.run_id,
            lambda entry, facts, now: decide_claim(entry, request, facts, now, self.lease_seconds),
            Facts(deployment=deployment),
        )
        reply = verdict.reply
        if isinstance(reply, p.ClaimGrant):
            crash_point("after-claim-write")  # recorded, not answered: the lost-reply test
            reply = self.fences.keyed(reply)
        await self.executor.carry_out(verdict, entry)
        return reply

    async def release(self, request: p.ReleaseRequest) -> p.Ok:
        verdict, _ = await self.executor.take(
            request.run_id, lambda entry, facts, now: decide_release(entry, request, now)
        )
        return verdict.reply

    async def heartbeat(self, beat: p.Heartbeat) -> p.HeartbeatReply | None:
        """Renew the leases of the runs the agent holds; the leader answers with those it no
        longer holds (a follower does not answer). Nothing here waits for the store."""
        now = time.monotonic()
        self.agents.heard(beat, now)
        slots = self.slots()
        if slots is not None:  # after an election, earlier grants count again
            slots.adopt(beat.agent, beat.slots)
        for held in beat.runs:
            self.ledger.leases.heard(held.run_id, beat.agent, held.attempt, now)
        verdict = decide_heartbeat(
            beat,
            self.ledger.entries,
            frozenset(self.agents.lost),
            frozenset(self.agents.checking),
            self.leading(),
            self.lease_seconds,
        )
        for run_id in verdict.renew:
            self.ledger.renew(run_id, now)
        lost = set(verdict.lost)
        self.agents.lost.difference_update(
            {(beat.agent, held.run_id, held.attempt) for held in beat.runs if held.run_id in lost}
        )
        for held in verdict.check:
            self.agents.checking.add(held.run_id)
            self.background.spawn(self._check_holder(beat.agent, held))
        return verdict.reply

    async def _check_holder(self, agent: str, held: p.HeldRun) -> None:
        """Read a run the leader's copy does not show held by ``agent``'s attempt: named lost
        in the agent's next answer if the store agrees."""
        try:
            async with self.ledger.locks.hold(held.run_id):
                entry = await self.ledger.get(held.run_id, fresh=True)
            if entry is None or not held_by(entry, agent, held.attempt):
                self.agents.lost.add((agent, held.run_id, held.attempt))
        except Exception as exc:  # the next heartbeat asks again
            log.warning("could not read a heartbeat's run", run_id=held.run_id, error=repr(exc))
        finally:
            self.agents.checking.discard(held.run_id)

    async def list_agents(self, _: None) -> p.AgentList:
        return self.agents.listing()


__all__ = ["Claims"]
