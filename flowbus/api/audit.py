"""The audit trail: who caused what (``GET /api/v1/audit``), newest first."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import AwareDatetime

from flowbus.api.common import ERRORS, store_of
from flowbus.engine.api_tokens import DURATION_PATTERN
from flowbus.engine.audit import since_time
from flowbus.engine.clock import canonical
from flowbus.engine.errors import UsageError

router = APIRouter(responses=ERRORS)


@router.get("/audit", tags=["audit"])
async def audit(
    request: Request,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[
        str | None, Query(pattern=DURATION_PATTERN, examples=["1d"], description="How far back.")
    ] = None,
    after: Annotated[AwareDatetime | None, Query(description="From this time on.")] = None,
    subject: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """What people (and services) caused, newest first: submits, cancels, resumes, retries,
    deploys, changes of blocks, variables, limits, automations and queues, tokens made and
    revoked, blocks handed to agents."""
    try:
        start = since_time(since) if since else None
    except UsageError as exc:
        raise HTTPException(422, str(exc)) from exc
    if after is not None:
        start = max(start or "", canonical(after))
    found = await store_of(request).list_audit(actor=actor, since=start, limit=limit,
                                               subject=subject)  # fmt: skip
    return [entry.to_dict() for entry in found]


__all__ = ["router"]
