"""Artifacts: a run's, and the latest of a key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request

from flowbus.api.common import ERRORS, run_or_404, store_of
from flowbus.engine.artifacts import latest as latest_artifact
from flowbus.engine.artifacts import latest_of_each_key, run_artifacts

router = APIRouter(responses=ERRORS)


@router.get("/runs/{run_id}/artifacts", tags=["artifacts"])
async def list_run_artifacts(request: Request, run_id: str) -> list[dict[str, Any]]:
    """A run's artifacts in creation order, each with its latest data."""
    store = store_of(request)
    await run_or_404(store, run_id)
    return [a.to_dict() for a in run_artifacts(await store.read_stream(run_id))]


@router.get("/artifacts", tags=["artifacts"])
async def list_artifacts(request: Request) -> list[dict[str, Any]]:
    """The latest artifact of each key, newest first (those made with no key are on their
    run's page)."""
    return [a.to_dict() for a in await latest_of_each_key(store_of(request))]


@router.get("/artifacts/{key}", tags=["artifacts"])
async def get_artifact(request: Request, key: str) -> dict[str, Any]:
    """The latest artifact recorded under ``key``."""
    found = await latest_artifact(store_of(request), key)
    if found is None:
        raise HTTPException(404, f"no artifact with key {key!r}")
    return found.to_dict()


__all__ = ["router"]
