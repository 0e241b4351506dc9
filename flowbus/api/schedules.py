"""Schedules: every deployment's, and pausing or resuming one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request

from flowbus.api.common import ERRORS, store_of
from flowbus.engine.deployments import set_schedules_active
from flowbus.engine.errors import UsageError
from flowbus.engine.schedules import describe_all

router = APIRouter(responses=ERRORS)


@router.get("/schedules", tags=["schedules"])
async def list_schedules(request: Request) -> list[dict[str, Any]]:
    """Every deployment's schedules, with their next slot and the deployment's policies."""
    return [
        {"deployment": d.name, "catchup": d.catchup, "overlap": d.overlap, **row}
        for d in await store_of(request).list_deployments()
        for row in describe_all(d)
    ]


async def _set_schedule(
    request: Request, flow_name: str, name: str, schedule_id: int, active: bool
) -> list[dict[str, Any]]:
    try:
        saved = await set_schedules_active(
            store_of(request), f"{flow_name}/{name}", schedule_id, active
        )
    except UsageError as exc:
        raise HTTPException(404, str(exc)) from exc
    return describe_all(saved)


ScheduleId = Annotated[int, Path(ge=1, le=1000)]


@router.post("/deployments/{flow_name}/{name}/schedules/{schedule_id}/pause", tags=["schedules"])
async def pause_schedule(
    request: Request, flow_name: str, name: str, schedule_id: ScheduleId
) -> list[dict[str, Any]]:
    """Pause one schedule: no runs for its slots; runs made ahead are cancelled at their slot."""
    return await _set_schedule(request, flow_name, name, schedule_id, False)


@router.post("/deployments/{flow_name}/{name}/schedules/{schedule_id}/resume", tags=["schedules"])
async def resume_schedule(
    request: Request, flow_name: str, name: str, schedule_id: ScheduleId
) -> list[dict[str, Any]]:
    """Resume a schedule; the slots of its pause are not caught up."""
    return await _set_schedule(request, flow_name, name, schedule_id, True)


__all__ = ["router"]
