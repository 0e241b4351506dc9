"""The one place a decision becomes I/O: the facts it asks for are read, its changes committed
(by the ledger's compare-and-swap), and its effects carried out.

    verdict, entry = await executor.take(run_id, lambda entry, facts, now: decide_x(...))

The effects a decision names are done here, after the commit and in order: publish the run's
request, release it under its deployment's policies, arm its timer, renew its lease, note a
crash. ``AskAgentToCancel`` is the cancel's own business (its answer decides the reply); it
is returned with the decision.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Protocol, TypeVar

import structlog
from nats.js.client import JetStreamContext

from flowbus.agents import telemetry
from flowbus.agents.decisions.model import (
    UNREADABLE,
    ArmTimer,
    Decision,
    Facts,
    NeedFacts,
    NoteCrash,
    Publish,
    Release,
    RenewLease,
    StreamHead,
)
from flowbus.agents.ledger import Decide, RunLedger
from flowbus.agents.orchestrator.deployments import Deployments
from flowbus.agents.orchestrator.outbox import Outbox
from flowbus.agents.run_entry import RunEntry
from flowbus.broker.run_states import newest_state
from flowbus.engine.store import EventStore

log = structlog.get_logger("flowbus.orchestrator")
R = TypeVar("R")


class Releaser(Protocol):
    """Where runs go that only their deployment's policies may publish (``Releases``)."""

    def arm(self, entry: RunEntry) -> None: ...
    async def release(self, entry: RunEntry) -> None: ...


class Executor:
    """Takes decisions on runs and carries them out."""

    def __init__(
        self,
        ledger: RunLedger,
        outbox: Outbox,
        deployments: Deployments,
        js: JetStreamContext,
        store: EventStore,
        counts: Counter[str],
    ) -> None:
        self.ledger = ledger
        self.outbox = outbox
        self.deployments = deployments
        self.js = js
        self.store = store
        self.counts = counts
        #: Set where the orchestrator is put together (it needs this executor itself).
        self.releases: Releaser | None = None

    async def decide(
        self, run_id: str, decide: Decide[R], facts: Facts | None = None, new: bool = False
    ) -> tuple[Decision[R], RunEntry | None]:
        """Take the decision and commit its changes; its effects are left to ``carry_out``.
        ``new``: a run id just drawn at random (nothing to read of it)."""
        verdict, entry, _ = await self.ledger.take(run_id, decide, self.gather, facts, new)
        return verdict, entry

    async def take(
        self, run_id: str, decide: Decide[R], facts: Facts | None = None
    ) -> tuple[Decision[R], RunEntry | None]:
        """Take the decision, commit its changes, carry out its effects."""
        verdict, entry = await self.decide(run_id, decide, facts)
        await self.carry_out(verdict, entry)
        return verdict, entry

    async def gather(
        self, need: NeedFacts, run_id: str, entry: RunEntry | None, facts: Facts
    ) -> Facts:
        """Read what a decision asked for (outside the run's lock)."""
        read: dict[str, object] = {}
        if need.stream_head:
            read["stream_head"] = await self.stream_head(run_id)
        if need.view:
            read["view"] = await self.store.get_flow_run(run_id)
        if need.deployment:
            read["deployment"] = (
                await self.deployments.get(entry.deployment) if entry is not None else None
            )
        return facts.with_(**read)

    async def stream_head(self, run_id: str) -> StreamHead | None:
        """The newest state of the run on the events stream (``UNREADABLE``: NATS away)."""
        try:
            newest = await newest_state(self.js, run_id)
        except Exception:  # the stream cannot say: each decision knows what that means
            return UNREADABLE
        return StreamHead(newest.seq, newest.attempt) if newest is not None else None

    async def carry_out(self, verdict: Decision[Any], entry: RunEntry | None) -> None:
        """The decision's effects, in order, once its changes are committed."""
        for effect in verdict.effects:
            if isinstance(effect, NoteCrash):
                self.counts["crashed"] += 1
                log.warning("run crashed", run_id=entry.run_id if entry else None,
                            reason=effect.reason, requeued=effect.requeued)  # fmt: skip
                if effect.lease_expired:
                    telemetry.LEASE_EXPIRIES.inc()
            elif entry is None:
                continue
            elif isinstance(effect, Publish):
                await self.outbox.publish_if_queued(entry)
            elif isinstance(effect, RenewLease):
                self.ledger.renew(entry.run_id, time.monotonic())
            elif isinstance(effect, ArmTimer) and self.releases is not None:
                self.releases.arm(entry)
            elif isinstance(effect, Release) and self.releases is not None:
                await self.releases.release(entry)


__all__ = ["Executor", "Releaser"]
