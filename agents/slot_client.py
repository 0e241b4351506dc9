"""The agent's side of tag concurrency slots: a ``SlotProvider`` that asks the orchestrator.

A task run asks once; if its slots are not free it waits for the grant the orchestrator pushes
to its own inbox (no polling). It asks again only if no grant came for ``recheck`` seconds (the
orchestrator may have restarted and forgotten its place); asking again is safe.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.engine.concurrency import Release
from flowbus.engine.settings import env_float

log = structlog.get_logger("flowbus.slots")


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

    async def _acquire(self, tags: list[str], holder: str, run_id: str) -> bool:
        inbox = self.client.new_inbox()
        grants = await self.client.subscribe(inbox)
        request = p.SlotRequest(holder=holder, run_id=run_id, agent=self.agent, tags=tags,
                                notify=inbox).dump()  # fmt: skip
        try:
            while True:
                reply = await self._ask(request)
                if reply.granted or not reply.limited:
                    if reply.limited:
                        self.held[holder] = (run_id, reply.limited)
                    return bool(reply.limited)
                log.info("task run waits for a slot", holder=holder, tags=reply.limited)
                try:
                    await grants.next_msg(timeout=self.recheck)
                    self.held[holder] = (run_id, reply.limited)
                    return True
                except NatsTimeoutError:
                    continue  # ask again: a holder that already holds is told so
        except BaseException:
            # Cancelled while waiting: the slot, if granted meanwhile, goes back.
            await asyncio.shield(self._release(holder))
            raise
        finally:
            await grants.unsubscribe()

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
