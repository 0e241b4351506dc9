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

from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.engine.concurrency import Release
from flowbus.engine.settings import env_float

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
        self.recheck = recheck or env_float("FLOWBUS_SLOT_RECHECK_SECONDS", 30.0)
        #: Slots held now, by holder: (flow run, limited tags); the agent's heartbeat says so.
        self.held: dict[str, tuple[str, list[str]]] = {}
        #: Tag sets the orchestrator said have no limit, and when (monotonic): most tagged task
        #: runs need no slot, and should not pay a round trip each to learn it again.
        self._unlimited: dict[frozenset[str], float] = {}
        #: One inbox subscription for every grant (``<prefix>.<holder>``), not one per ask.
        self._inbox = ""
        self._grants: dict[str, asyncio.Future[None]] = {}

    def holdings(self) -> list[p.HeldSlots]:
        return [
            p.HeldSlots(holder=holder, run_id=run_id, tags=tags)
            for holder, (run_id, tags) in list(self.held.items())
        ]

    async def _on_loop(self, coro: Any) -> Any:
        if asyncio.get_running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def acquire(self, tags: list[str], holder: str, run_id: str) -> Release | None:
        limited: bool = await self._on_loop(self._acquire(tags, holder, run_id))
        if not limited:
            return None

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

    async def _acquire(self, tags: list[str], holder: str, run_id: str) -> bool:
        key = frozenset(tags)
        if time.monotonic() - self._unlimited.get(key, -UNLIMITED_SECONDS) < UNLIMITED_SECONDS:
            return False
        notify = f"{await self._grant_inbox()}.{holder}"
        granted = self._grants[holder] = self.loop.create_future()
        request = p.SlotRequest(holder=holder, run_id=run_id, agent=self.agent, tags=tags,
                                notify=notify).dump()  # fmt: skip
        try:
            while True:
                reply = await self._ask(request)
                if not reply.limited:
                    self._unlimited[key] = time.monotonic()
                    return False
                if not reply.granted:
                    log.info("task run waits for a slot", holder=holder, tags=reply.limited)
                    try:
                        await asyncio.wait_for(asyncio.shield(granted), self.recheck)
                    except TimeoutError:
                        continue  # ask again: a holder that already holds is told so
                self.held[holder] = (run_id, reply.limited)
                return True
        except BaseException:
            # Cancelled while waiting: the slot, if granted meanwhile, goes back.
            await asyncio.shield(self._release(holder))
            raise
        finally:
            self._grants.pop(holder, None)

    async def _ask(self, request: bytes) -> p.SlotReply:
        while True:
            try:
                answer = await self.client.request(subjects.SLOT_ACQUIRE, request, timeout=5)
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
                subjects.SLOT_RELEASE, p.SlotRelease(holder=holder).dump(), timeout=5
            )
        except Exception as exc:  # the orchestrator reclaims it when the flow run ends
            log.warning("could not give a slot back", holder=holder, error=repr(exc))
