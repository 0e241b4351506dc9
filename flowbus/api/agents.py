"""Agents, as the orchestrators heard them last (their queues, runs, heartbeats)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from flowbus.api.common import ERRORS, client_of

router = APIRouter(responses=ERRORS)


@router.get("/agents", tags=["agents"])
async def list_agents(request: Request) -> list[dict[str, Any]]:
    return [a.model_dump(mode="json") for a in await client_of(request).agents()]


__all__ = ["router"]
