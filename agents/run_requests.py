"""What an agent asks the orchestrators about the runs it takes and holds: a claim (a grant, or
why not) and a release (the run given up), each a request on the wire, and the quiet settling
of a run request's message, whose failure changes nothing (the store decides who owns a run).
"""

from __future__ import annotations

from typing import Any, Literal

import structlog
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from flowbus.broker import protocol as p
from flowbus.broker import subjects, versions

log = structlog.get_logger("flowbus.agent")

ClaimReply = p.ClaimGrant | p.ClaimRefusal
Outcome = Literal["crashed", "handed_back", "cancelled"]


async def ask_claim(client: Client, claim: p.ClaimRequest, queue: str) -> ClaimReply:
    """The orchestrators' answer to ``claim`` of a request taken from ``queue``; a refusal
    ``unavailable`` when none answers or the answer is unreadable."""
    try:
        answer = await client.request(subjects.claim_subject(queue), claim.dump(), timeout=5,
                                      headers=versions.with_version())  # fmt: skip
    except (NoRespondersError, NatsTimeoutError, TimeoutError) as exc:
        log.warning("no orchestrator answered a claim", run_id=claim.run_id, error=repr(exc))
        return p.ClaimRefusal(reason="unavailable", message="no orchestrator answered")
    return parse_claim_reply(answer.data)


def parse_claim_reply(data: bytes) -> ClaimReply:
    try:
        return p.decode(p.ClaimGrant, data, tolerant=True)
    except p.ProtocolError:
        pass
    try:
        return p.decode(p.ClaimRefusal, data, tolerant=True)
    except p.ProtocolError:
        pass
    try:
        error = p.decode(p.ErrorReply, data, tolerant=True).error
        return p.ClaimRefusal(reason="unavailable", message=error.message)
    except p.ProtocolError:
        return p.ClaimRefusal(reason="unavailable", message="unreadable claim reply")


async def release(
    client: Client, grant: p.ClaimGrant, agent: str, outcome: Outcome, why: str
) -> None:
    """Give the run of ``grant`` up (its process died, it was cancelled, it is handed back);
    unanswered, its lease runs out instead, with the same effect."""
    request = p.ReleaseRequest(run_id=grant.run_id, attempt=grant.attempt, agent=agent,
                               outcome=outcome, message=why)  # fmt: skip
    try:
        await client.request(
            subjects.RELEASE, request.dump(), timeout=5, headers=versions.with_version()
        )
    except Exception as exc:  # its lease expires instead, with the same effect
        log.warning("could not release a run", run_id=grant.run_id, error=repr(exc))


async def quietly(operation: Any) -> None:
    """Ack-family calls whose failure changes nothing (the store decides who owns a run)."""
    try:
        await operation
    except Exception as exc:
        log.debug("message operation failed", error=repr(exc))


__all__ = ["ClaimReply", "ask_claim", "parse_claim_reply", "quietly", "release"]
