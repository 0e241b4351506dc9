"""The orchestrator's concurrency slots: the requests ``flowbus.slot.acquire`` and
``flowbus.slot.release``, the limits they are measured against, and the table of holdings
(engine/slot_table.py) behind them.

A limit is read from the store at most once a second per key: a tag's ``limit`` document, or a
global limit's (``gcl:<name>``; an inactive one limits nothing). A waiter that does not fit now
is told of its grant by a message to its inbox the moment it fits: when slots are given back,
when the table has settled after a start, or when a rate-limited bucket has drained (one timer
for the first of those; nothing polls).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from flowbus.agents.background import BackgroundTasks
from flowbus.broker import protocol as p
from flowbus.engine.slot_table import GLOBAL, GLOBAL_LIMIT, LIMIT, Holding, SlotTable, Waiter
from flowbus.engine.store import EventStore

log = structlog.get_logger("flowbus.orchestrator")
#: How long a limit read from the store is taken as it is (a new limit applies within it).
LIMITS_SECONDS = 1.0
HAND = p.HAND


class SlotService:
    """Grants and takes back slots for every agent; see the module's docstring."""

    def __init__(self, client: Any, store: EventStore, background: BackgroundTasks) -> None:
        self.client = client
        self.store = store
        self.background = background
        self.table = SlotTable()
        #: key -> (read at, its limit or None).
        self._limits: dict[str, tuple[float, int | None]] = {}
        self._drain_timer: asyncio.TimerHandle | None = None
        #: Processes holding slots by hand (``hand:...``), and when each was last heard.
        self.hands: dict[str, float] = {}

    # --- limits ------------------------------------------------------------------------------

    async def limits_of(self, keys: list[str]) -> dict[str, int]:
        """The limits of these keys; a global limit's slot decay goes to the table."""
        now = time.monotonic()
        found: dict[str, int] = {}
        for key in keys:
            cached = self._limits.get(key)
            if cached is None or now - cached[0] > LIMITS_SECONDS:
                cached = (now, await self._read_limit(key))
                self._limits[key] = cached
            if cached[1] is not None:
                found[key] = cached[1]
        return found

    async def _read_limit(self, key: str) -> int | None:
        if not key.startswith(GLOBAL):
            document = await self.store.get_document(LIMIT, key)
            return int(document.body["limit"]) if document else None
        document = await self.store.get_document(GLOBAL_LIMIT, key[len(GLOBAL) :])
        if document is None or not document.body.get("active", True):
            return None
        self.table.decay[key] = float(document.body.get("slot_decay_per_second") or 0.0)
        return int(document.body["limit"])

    def known_limits(self) -> dict[str, int]:
        return {key: limit for key, (_, limit) in self._limits.items() if limit is not None}

    # --- requests ----------------------------------------------------------------------------

    async def acquire(self, request: p.SlotRequest) -> p.SlotReply:
        self._heard(request.agent)
        limits = await self.limits_of(request.tags)
        if not limits:
            return p.SlotReply(granted=True, limited=[])
        limited = sorted(limits)
        too_small = [key for key in limited if limits[key] < request.occupy]
        no_decay = [k for k in limited if request.decay and not self.table.decay.get(k)]
        if too_small or no_decay:
            return p.SlotReply(granted=False, limited=limited, too_small=too_small,
                               no_decay=no_decay)  # fmt: skip
        waiter = Waiter(request.holder, tuple(limited), request.run_id, request.agent,
                        request.occupy, request.notify, request.decay)  # fmt: skip
        granted = self.table.acquire(waiter, self.known_limits())
        if not granted:
            self._arm_drain()
        return p.SlotReply(granted=granted, limited=limited)

    async def release(self, request: p.SlotRelease) -> p.Ok:
        await self._tell(self.table.release(request.holder, self.known_limits()))
        return p.Ok()

    async def renew(self, request: p.SlotRenew) -> p.Ok:
        """A process holding slots by hand is alive; count what it holds (granted before a
        restart of the orchestrator)."""
        process = request.process if request.process.startswith(HAND) else HAND + request.process
        self._heard(process)
        self.adopt(process, request.holdings)
        return p.Ok()

    def _heard(self, agent: str) -> None:
        if agent.startswith(HAND):
            self.hands[agent] = time.monotonic()

    def reclaim_silent_hands(self, lease: float) -> None:
        """Take back the slots of processes by hand not heard of for ``lease`` seconds (a
        script killed while it held them)."""
        now = time.monotonic()
        silent = {agent for agent, heard in self.hands.items() if now - heard > lease}
        for agent in silent:
            del self.hands[agent]
        if silent:
            self.reclaim(lambda h: h.agent in silent, "its process stopped renewing its slots")

    async def list_limits(self, _: None) -> p.LimitList:
        """Tag limits with their live holders and waiters."""
        infos = []
        for document in await self.store.list_documents(LIMIT):
            tag = document.name
            holders = [
                {"holder": h.holder, "run_id": h.run_id, "agent": h.agent}
                for h in self.table.holdings.values()
                if tag in h.tags
            ]
            waiting = sum(1 for w in self.table.waiters if tag in w.tags)
            infos.append(
                p.LimitInfo(
                    tag=tag, limit=int(document.body["limit"]), active=len(holders),
                    waiting=waiting, holders=holders,
                )
            )  # fmt: skip
        return p.LimitList(limits=infos)

    # --- what the rest of the orchestrator tells it --------------------------------------------

    def settle(self, seconds: float) -> None:
        """Grant nothing for ``seconds``: the agents report the holdings of before a start."""
        self.table.settle_until(time.monotonic() + seconds)

    def adopt(self, agent: str, held: list[p.HeldSlots]) -> None:
        """Count the holdings an agent reports in its heartbeat (granted before a restart)."""
        for slots in held:
            self.table.adopt(Holding(slots.holder, tuple(slots.tags), slots.run_id, agent,
                                     slots.occupy))  # fmt: skip

    def reclaim(self, gone: Callable[[Holding], bool], why: str) -> None:
        """Take back the slots of every holding ``gone`` says is gone; tell who now fits."""
        if not (self.table.holdings or self.table.waiters):
            return
        reclaimed, granted = self.table.release_where(gone, self.known_limits())
        for holding in reclaimed:
            log.info("slots reclaimed", holder=holding.holder, tags=holding.tags, reason=why)
        if granted:
            self.background.spawn(self._tell(granted))

    # --- telling waiters ---------------------------------------------------------------------

    def _arm_drain(self) -> None:
        delay = self.table.next_drain(self.known_limits())
        if delay is None or self._drain_timer is not None:
            return

        def fire() -> None:
            self._drain_timer = None
            granted = self.table.grant(self.known_limits())
            if granted:
                self.background.spawn(self._tell(granted))
            self._arm_drain()

        self._drain_timer = asyncio.get_running_loop().call_later(delay, fire)

    async def _tell(self, granted: list[Waiter]) -> None:
        for waiter in granted:
            await self.client.publish(waiter.notify, p.SlotGrant(holder=waiter.holder).dump())
