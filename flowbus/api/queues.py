"""Work queues (listing, pausing, resuming) and tag concurrency limits, as the orchestrators
answer them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from flowbus.api.common import ERRORS, QueueName, client_of

router = APIRouter(responses=ERRORS)


@router.get("/queues", tags=["queues"])
async def list_queues(request: Request) -> list[dict[str, Any]]:
    return [q.model_dump(mode="json") for q in await client_of(request).queues()]


@router.post("/queues/{name}/pause", tags=["queues"])
async def pause_queue(request: Request, name: QueueName) -> dict[str, Any]:
    return (await client_of(request).update_queue(name, paused=True)).model_dump(mode="json")


@router.post("/queues/{name}/resume", tags=["queues"])
async def resume_queue(request: Request, name: QueueName) -> dict[str, Any]:
    return (await client_of(request).update_queue(name, paused=False)).model_dump(mode="json")


@router.get("/limits", tags=["queues"])
async def list_limits(request: Request) -> list[dict[str, Any]]:
    """Tag concurrency limits, with the slots held (by which task runs) and waited for."""
    return [limit.model_dump(mode="json") for limit in await client_of(request).limits()]


__all__ = ["router"]
