"""Automations, with how often each fired and its last firing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from flowbus.api.common import ERRORS, store_of
from flowbus.engine.automations import AUTOMATION, AUTOMATION_STATUS

router = APIRouter(responses=ERRORS)


@router.get("/automations", tags=["automations"])
async def list_automations(request: Request) -> list[dict[str, Any]]:
    """Automations: trigger, actions, whether enabled, and ``status``: how often it fired and
    its last firing (event, and each action's outcome, such as the run it started)."""
    store = store_of(request)
    status = {d.name: d.body for d in await store.list_documents(AUTOMATION_STATUS)}
    return [
        {**d.body, "updated": d.updated, "version": d.version, "status": status.get(d.name)}
        for d in await store.list_documents(AUTOMATION)
    ]


__all__ = ["router"]
