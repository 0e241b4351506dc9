"""Variables: listing and one by name."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request

from flowbus.api.common import ERRORS, store_of
from flowbus.engine.variables import VARIABLE

router = APIRouter(responses=ERRORS)


@router.get("/variables", tags=["variables"])
async def list_variables(request: Request) -> list[dict[str, Any]]:
    return [
        {"name": d.name, "value": d.body, "updated": d.updated, "version": d.version}
        for d in await store_of(request).list_documents(VARIABLE)
    ]


@router.get("/variables/{name}", tags=["variables"])
async def get_variable(request: Request, name: str) -> dict[str, Any]:
    found = await store_of(request).get_document(VARIABLE, name)
    if found is None:
        raise HTTPException(404, f"no variable {name}")
    return {"name": found.name, "value": found.body, "updated": found.updated,
            "version": found.version}  # fmt: skip


__all__ = ["router"]
