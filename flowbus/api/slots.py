"""Concurrency slots for processes by hand: a flow run by hand (or code outside any run) whose
profile names this server takes tag and global limits' slots from the orchestrators, as agents
do, so the limits bind across every process (``flowbus/remote/slots.py`` is the other side).

``POST /slots/acquire`` asks once and, if the slots are not free, waits up to ``wait`` seconds
for the grant (a long poll: the caller asks again with the same holder, which keeps its place).
``POST /slots/renew`` says the process is alive and what it holds; a process silent for the
lease (``FLOWBUS_LEASE_SECONDS``) loses its slots. The process's holdings are named
``hand:<process>``, set here: a token holder cannot pose as an agent.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ConfigDict, Field

from flowbus.api.common import ERRORS, SendableBody, client_of
from flowbus.broker import protocol as p
from flowbus.broker import subjects, versions
from flowbus.client import ClientError

router = APIRouter(responses=ERRORS)
HAND = p.HAND
#: The longest a request waits for its grant before answering "not yet".
LONGEST_WAIT = 25.0


class _Body(SendableBody):
    model_config = ConfigDict(extra="forbid")


class AcquireBody(_Body):
    holder: str = Field(min_length=1, max_length=200)
    process: str = Field(min_length=1, max_length=200)
    run_id: str = Field(default="", max_length=200)
    #: Tags (a task run's), or ``gcl:<name>`` for global limits.
    keys: list[str] = Field(max_length=100)
    occupy: int = Field(default=1, ge=1, le=1_000_000)
    decay: bool = False
    wait: float = Field(default=20.0, ge=0, le=LONGEST_WAIT)


class ReleaseBody(_Body):
    holder: str = Field(min_length=1, max_length=200)


class HeldBody(_Body):
    holder: str = Field(min_length=1, max_length=200)
    run_id: str = Field(default="", max_length=200)
    tags: list[str] = Field(max_length=100)
    occupy: int = Field(default=1, ge=1, le=1_000_000)


class RenewBody(_Body):
    process: str = Field(min_length=1, max_length=200)
    holdings: list[HeldBody] = Field(default_factory=list, max_length=10_000)


async def _ask(request: Request, subject: str, message: p._Message) -> bytes:
    try:
        answer = await client_of(request).nats.request(
            subject, message.dump(), timeout=10, headers=versions.with_version()
        )
    except Exception as exc:  # no orchestrator leads just now: the caller asks again
        raise ClientError("unavailable", f"no orchestrator answered: {exc!r}") from exc
    return bytes(answer.data)


@router.post("/slots/acquire", tags=["limits"])
async def acquire_slots(request: Request, body: AcquireBody) -> dict[str, Any]:
    """Take slots of the given limits for a process by hand; waits up to ``wait`` seconds."""
    nats = client_of(request).nats
    inbox = nats.new_inbox()
    granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def told(_: Any) -> None:
        if not granted.done():
            granted.set_result(None)

    subscription = await nats.subscribe(inbox, cb=told)
    try:
        ask = p.SlotRequest(holder=body.holder, run_id=body.run_id, agent=HAND + body.process,
                            tags=body.keys, notify=inbox, occupy=body.occupy,
                            decay=body.decay)  # fmt: skip
        reply = p.decode_reply(p.SlotReply, await _ask(request, subjects.SLOT_ACQUIRE, ask))
        if isinstance(reply, p.ErrorReply):
            raise ClientError(reply.error.code, reply.error.message, reply.error.details)
        answer = reply.model_dump(mode="json")
        if not reply.granted and not (reply.too_small or reply.no_decay):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(granted, body.wait)
                answer["granted"] = True
        return answer
    finally:
        await subscription.unsubscribe()


@router.post("/slots/release", tags=["limits"])
async def release_slots(request: Request, body: ReleaseBody) -> dict[str, bool]:
    await _ask(request, subjects.SLOT_RELEASE, p.SlotRelease(holder=body.holder))
    return {"ok": True}


@router.post("/slots/renew", tags=["limits"])
async def renew_slots(request: Request, body: RenewBody) -> dict[str, bool]:
    """The process is alive and holds these slots."""
    held = [p.HeldSlots(**holding.model_dump()) for holding in body.holdings]
    renew = p.SlotRenew(process=HAND + body.process, holdings=held)
    await _ask(request, subjects.SLOT_RENEW, renew)
    return {"ok": True}


__all__ = ["router"]
