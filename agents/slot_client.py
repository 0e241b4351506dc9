"""The agent's side of tag concurrency slots: a ``SlotProvider`` that asks the orchestrator.

A task run asks once; if its slots are not free it waits for the grant the orchestrator pushes
to its own inbox (no polling). It asks again only if no grant came for ``recheck`` seconds (the
orchestrator may have restarted and forgotten its place); asking again is safe.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from flowbus.agents.settings import AgentEnv, load
from flowbus.broker import protocol as p
from flowbus.broker import subjects, versions
from flowbus.engine.concurrency import NamedSlots, Release
from flowbus.engine.slot_table import GLOBAL

log = structlog.get_logger("flowbus.slots")
#: How long a tag set known to have no limit is taken as such (the orchestrator reads limits
#: as often: a new limit applies within a second either way).
UNLIMITED_SECONDS = 1.0


class NatsSlots:
    """Slots through the orchestrator, on ``client``'s loop (callable from any thread)."""

    def __init__(
        self,
        client: Client,
        loop: asyncio.AbstractEventLoop,
        agent: str,
        recheck: float | None = None,
    ) -> None:
        self.client = client
        self.loop = loop
        self.agent = agent
        #: ``$FLOWBUS_SLOT_RECHECK_SECONDS``, default 30.
        self.recheck = recheck or load(AgentEnv).slot_recheck_seconds
        #: Slots held now, by holder: (flow run, limited keys, slots of each); the agent's
        #: heartbeat says so.
        self.held: dict[str, tuple[str, list[str], int]] = {}
        #: Tag sets the orchestrator said have no limit, and when (monotonic): most tagged task
        #: runs need no slot, and should not pay a round trip each to learn it again.
        self._unlimited: dict[frozenset[str], float] = {}
        #: One inbox subscription for every grant (``<prefix>.<holder>``), not one per ask.
        self._inbox = ""
        self._grants: dict[str, asyncio.Future[None]] = {}

    def holdings(self) -> list[p.HeldSlots]:
        return [
            p.HeldSlots(holder=holder, run_id=run_id, tags=tags, occupy=occupy)
            for holder, (run_id, tags, occupy) in list(self.held.items())
        ]

    async def _on_loop(self, coro: Any) -> Any:
        if asyncio.get_running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def acquire(self, tags: list[str], holder: str, run_id: str) -> Release | None:
        reply = await self._on_loop(self._acquire(tags, holder, run_id))
        return self._releaser(holder) if reply.limited else None

    async def acquire_named(self, names: list[str], request: NamedSlots) -> Release | None:
        """Slots of global limits (``concurrency()``, ``rate_limit()``); see ``NamedSlots``."""
        keys = [GLOBAL + name for name in names]
        reply = await self._on_loop(self._acquire(keys, request.holder, request.run_id, request))
        if not reply.limited or request.decay:
            return None  # no limit, or a rate limit: its slots decay, nothing to give back
        return self._releaser(request.holder)

    def _releaser(self, holder: str) -> Release:
        async def release() -> None:
            await self._on_loop(self._release(holder))

        return release

    async def _grant_inbox(self) -> str:
        if not self._inbox:
            self._inbox = self.client.new_inbox()
            await self.client.subscribe(f"{self._inbox}.*", cb=self._on_grant)
        return self._inbox

    async def _on_grant(self, message: Msg) -> None:
        waiting = self._grants.get(message.subject.rsplit(".", 1)[-1])
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def _acquire(
        self, tags: list[str], holder: str, run_id: str, named: NamedSlots | None = None
    ) -> p.SlotReply:
        """Ask until the slots are held; the reply says which keys were limited (none: no slot
        was needed)."""
        key = frozenset(tags)
        unlimited = p.SlotReply(granted=True, limited=[])
        recent = time.monotonic() - self._unlimited.get(key, -UNLIMITED_SECONDS)
        if recent < UNLIMITED_SECONDS and (named is None or not named.strict):
            return unlimited
        notify = f"{await self._grant_inbox()}.{holder}"
        granted = self._grants[holder] = self.loop.create_future()
        request = p.SlotRequest(holder=holder, run_id=run_id, agent=self.agent, tags=tags,
                                notify=notify, occupy=named.occupy if named else 1,
                                decay=named.decay if named else False).dump()  # fmt: skip
        deadline = None if named is None else named.deadline()
        try:
            while True:
                reply = await self._ask(request)
                if named is not None:
                    named.check(reply)
                if not reply.limited:
                    self._unlimited[key] = time.monotonic()
                    return unlimited
                if not reply.granted:
                    log.info("waits for a slot", holder=holder, tags=reply.limited)
                    try:
                        await asyncio.wait_for(
                            asyncio.shield(granted), _wait(self.recheck, deadline)
                        )
                    except TimeoutError:
                        if deadline is not None and time.monotonic() >= deadline:
                            raise named.timed_out() from None  # type: ignore[union-attr]
                        continue  # ask again: a holder that already holds is told so
                if not (named and named.decay):
                    self.held[holder] = (run_id, reply.limited, named.occupy if named else 1)
                return reply
        except BaseException:
            # Cancelled or timed out while waiting: the slot, if granted meanwhile, goes back.
            await asyncio.shield(self._release(holder))
            raise
        finally:
            self._grants.pop(holder, None)

    async def _ask(self, request: bytes) -> p.SlotReply:
        while True:
            try:
                answer = await self.client.request(
                    subjects.SLOT_ACQUIRE, request, timeout=5, headers=versions.with_version()
                )
            except (NoRespondersError, NatsTimeoutError):
                await asyncio.sleep(1)  # no orchestrator just now: it comes back
                continue
            reply = p.decode_reply(p.SlotReply, answer.data)
            if isinstance(reply, p.ErrorReply):
                raise RuntimeError(f"the orchestrator refused a slot: {reply.error.message}")
            return reply

    async def _release(self, holder: str) -> None:
        self.held.pop(holder, None)
        try:
            await self.client.request(
                subjects.SLOT_RELEASE,
                p.SlotRelease(holder=holder).dump(),
                timeout=5,
                headers=versions.with_version(),
            )
        except Exception as exc:  # the orchestrator reclaims it when the flow run ends
            log.warning("could not give a slot back", holder=holder, error=repr(exc))


def _wait(recheck: float, deadline: float | None) -> float:
    """How long to wait for a grant before asking again (or giving up at the deadline)."""
    if deadline is None:
        return recheck
    return max(0.0, min(recheck, deadline - time.monotonic()))
