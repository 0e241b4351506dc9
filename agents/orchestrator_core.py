"""What every concern of the orchestrator shares: its settings, its state (the ledger, the
agents heard, caches, the leader's lease) and the few helpers they all use.

The orchestrator is one class composed of one module per concern: submissions and the outbox
(``submissions.py``), claims, heartbeats and leases (``claims.py``), cancel and pause
(``controls.py``), the janitor (``janitor.py``), and its life and leadership
(``orchestrator.py``). Each is a class over ``OrchestratorCore``, which declares the state they
share and the methods they call on each other.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from pydantic import BaseModel

from flowbus.agents.automations import AutomationEngine
from flowbus.agents.background import BackgroundTasks
from flowbus.agents.leadership import Leadership
from flowbus.agents.ledger import RunEntry, RunLedger
from flowbus.agents.queue_service import QueueService
from flowbus.agents.recorded_waits import RecordedWaits
from flowbus.agents.recorder import Recorder
from flowbus.agents.scheduler import Scheduler
from flowbus.agents.settings import OrchestratorEnv, load
from flowbus.agents.slot_service import SlotService
from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.broker.event_sink import EventPublisher
from flowbus.engine.clock import now_iso
from flowbus.engine.records import EventRecord
from flowbus.engine.states import StateType
from flowbus.engine.store import DeploymentView, EventStore

log = structlog.get_logger("flowbus.orchestrator")

S = StateType
#: How long a deployment read from the store is used before it is read again.
DEPLOYMENT_CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class OrchestratorSettings:
    #: A run whose agent has not renewed its lease for this long is Crashed.
    lease_seconds: float = 30.0
    #: How often the janitor looks for expired leases, unpublished and late runs.
    janitor_interval: float = 1.0
    #: A queued run not claimed this long after it was queued becomes Late.
    late_after: float = 15.0
    #: JetStream redelivers a run request its agent neither acked nor kept alive after this.
    run_ack_wait: float = 30.0
    #: How often the leader checks that each published request is still in its queue.
    queue_audit_interval: float = 10.0
    #: Whether the scheduler runs in this process (``FLOWBUS_SCHEDULER=off`` leaves it to a
    #: ``flowbus scheduler start`` elsewhere).
    scheduler: bool = True
    #: Whether the automation engine runs in this process (``FLOWBUS_AUTOMATIONS=off``: not).
    automations: bool = True
    #: How often agents renew their leases: a new leader grants no slot for two.
    heartbeat_seconds: float = 5.0
    #: How long the leader's lease lasts without renewal (a dead leader's successor waits it).
    leader_lease_seconds: float = 5.0

    @classmethod
    def from_env(cls) -> OrchestratorSettings:
        """Settings from the ``FLOWBUS_*`` variables of ``OrchestratorEnv`` (validated: a bad
        value is a ``SettingsError`` naming the variable)."""
        env = load(OrchestratorEnv)
        return cls(
            lease_seconds=env.lease_seconds,
            janitor_interval=env.janitor_interval,
            late_after=env.late_after_seconds,
            run_ack_wait=env.run_ack_wait,
            queue_audit_interval=env.queue_audit_interval,
            scheduler=env.scheduler,
            automations=env.automations,
            heartbeat_seconds=env.heartbeat_seconds,
            leader_lease_seconds=env.leader_lease_seconds,
        )


@dataclass
class AgentSeen:
    """An agent as its last heartbeat described it."""

    heartbeat: p.Heartbeat
    last_seen: float
    last_seen_iso: str = field(default_factory=now_iso)


class OrchestratorCore:
    """The orchestrator's shared state and helpers (see the module's docstring)."""

    client: Client
    js: JetStreamContext
    store: EventStore
    settings: OrchestratorSettings
    ledger: RunLedger
    leadership: Leadership
    background: BackgroundTasks
    queues: QueueService
    recorder: Recorder | None
    recorded_waits: RecordedWaits
    scheduler: Scheduler | None
    automations: AutomationEngine | None
    slots: SlotService | None
    agents: dict[str, AgentSeen]
    counts: dict[str, int]
    _stopping: asyncio.Event
    _models: dict[tuple[str, int], type[BaseModel]]
    _deployments: dict[str, tuple[float, DeploymentView]]
    #: One check-then-publish of a limited deployment's run at a time: none overtakes.
    _limited_release: asyncio.Lock
    #: Runs made ahead of time whose release timer is set.
    _armed: set[str]
    #: (agent, run, attempt) the store says the agent no longer holds: named in its next
    #: heartbeat's answer; and the runs being read for that now.
    _lost: set[tuple[str, str, int]]
    _checking: set[str]
    #: Publishes the events the ledger wrote (made on first use, on the serving loop).
    _announcer: EventPublisher | None = None

    def _term(self) -> dict[str, Any]:
        """The fencing token written into the leader's own decisions."""
        term = self.leadership.term
        return {"leader_term": term.token} if term is not None else {}

    def _count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    async def _deployment(self, name: str) -> DeploymentView | None:
        """A deployment, read at most once a second: deployments are saved straight into the
        store (by ``flowbus deploy``), so a redeploy takes effect within a second."""
        now = time.monotonic()
        cached = self._deployments.get(name)
        if cached is not None and now - cached[0] < DEPLOYMENT_CACHE_SECONDS:
            return cached[1]
        deployment = await self.store.get_deployment(name)
        if deployment is not None:
            self._deployments[name] = (now, deployment)
        return deployment

    def _announce(self, records: list[EventRecord]) -> None:
        """Publish events the ledger wrote (once committed), so subscribers see every state
        change: through a NATS restart too, the publisher retrying until they are acked."""
        if self._announcer is None:
            self._announcer = EventPublisher(self.client, asyncio.get_running_loop(),
                                             {subjects.RECORDED_HEADER: "1"})  # fmt: skip
        for record in records:
            self._announcer.submit(record)

    # --- what one concern calls on another (defined in their modules) ----------------------

    async def cancel(self, request: p.CancelRequest) -> bytes:
        raise NotImplementedError

    async def _dispatch(self, entry: RunEntry, msg_id: str | None = None) -> None:
        raise NotImplementedError

    async def _dispatch_if_queued_again(self, run_id: str) -> None:
        raise NotImplementedError

    def _arm(self, entry: RunEntry) -> None:
        raise NotImplementedError

    async def _release(self, entry: RunEntry) -> None:
        raise NotImplementedError

    def _wake_deployment(self, name: str) -> None:
        raise NotImplementedError

    async def _expire(self, run_id: str) -> None:
        raise NotImplementedError

    async def _expire_pause(self, run_id: str) -> None:
        raise NotImplementedError


__all__ = ["AgentSeen", "OrchestratorCore", "OrchestratorSettings"]
