"""The leader's own work during one term: the recorder, the scheduler, the automation engine and
the slot grants. Started when the orchestrator is elected (after its ledger has read every
unfinished run), stopped when it steps down; a part that fails ends the orchestrator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client

from flowbus.agents.automations import AutomationEngine
from flowbus.agents.background import BackgroundTasks
from flowbus.agents.ledger import RunLedger
from flowbus.agents.lifecycle import Daemon, Loop
from flowbus.agents.orchestrator.settings import OrchestratorSettings
from flowbus.agents.recorder import Recorder
from flowbus.agents.retention_keeper import RetentionKeeper
from flowbus.agents.scheduler import Scheduler
from flowbus.agents.slot_service import SlotService
from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.broker.fencing import FenceChecker
from flowbus.engine.store import EventStore

#: How long the leader's parts have to stop at a step-down.
STOP_SECONDS = 10.0
#: Subscribes a service (subject, request model, handler) in the orchestrators' queue group.
Subscribe = Callable[
    [str, type[p._Message] | None, Callable[[Any], Awaitable[Any]]], Awaitable[Any]
]


class LeaderWork(Daemon):
    """What one term of leadership runs (see the module's docstring)."""

    name = "leader"

    def __init__(
        self,
        client: Client,
        store: EventStore,
        ledger: RunLedger,
        settings: OrchestratorSettings,
        background: BackgroundTasks,
        subscribe: Subscribe,
        fences: FenceChecker,
        member: str | None = None,
    ) -> None:
        """``member``: the orchestrator's name in its announcements (its recorder skips
        them: its ledger has them already)."""
        super().__init__()
        self.slots = SlotService(client, store, background)
        self.recorder = Recorder(client, store, ledger=ledger, fences=fences, own=member)
        self.scheduler = Scheduler(client, store) if settings.scheduler else None
        self.automations = AutomationEngine(client, store) if settings.automations else None
        self.retention = RetentionKeeper(store)
        self.settings = settings
        self._subscribe = subscribe
        self._subscriptions: list[Any] = []

    def _parts(self) -> list[Daemon]:
        parts = (self.recorder, self.scheduler, self.automations, self.retention)
        return [part for part in parts if part]

    async def open(self) -> None:
        # The slots granted before are known once every live agent has reported them in a
        # heartbeat: nothing is granted for two heartbeat intervals.
        self.slots.settle(2 * self.settings.heartbeat_seconds + 0.5)
        for subject, model, handler in (
            (subjects.SLOT_ACQUIRE, p.SlotRequest, self.slots.acquire),
            (subjects.SLOT_RELEASE, p.SlotRelease, self.slots.release),
            (subjects.SLOT_RENEW, p.SlotRenew, self.slots.renew),
            (subjects.LIMITS, None, self.slots.list_limits),
        ):
            self._subscriptions.append(await self._subscribe(subject, model, handler))
        for part in self._parts():
            await part.start()

    def loops(self) -> dict[str, Loop]:
        # Each part serves on its own; waiting on it here makes its failure the leader's.
        return {part.name: part.wait for part in self._parts()}

    async def drain(self) -> None:
        parts = self._parts()
        for part in parts:
            part.stop()
        waits = [asyncio.ensure_future(part.wait()) for part in parts]
        if waits:
            _, stuck = await asyncio.wait(waits, timeout=STOP_SECONDS)
            if stuck:
                for part in parts:
                    part.abort()
                await asyncio.wait(waits, timeout=STOP_SECONDS)

    async def close(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        if self.automations is not None:
            subscriptions += self.automations.subscriptions()
        for subscription in subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


__all__ = ["LeaderWork"]
