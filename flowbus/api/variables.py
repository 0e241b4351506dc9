"""Variables: listing and one by name."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request

from flowbus.api.common import ERRORS, store_of
from flowbus.engine.variables import VARIABLE, VARIABLE_TAGS, tags_of

router = APIRouter(responses=ERRORS)


@router.get("/variables", tags=["variables"])
async def list_variables(request: Request) -> list[dict[str, Any]]:
    store = store_of(request)
    tags = await tags_of(store)
    return [
        {"name": d.name, "value": d.body, "tags": tags.get(d.name, []), "updated": d.updated,
         "version": d.version}
        for d in await store.list_documents(VARIABLE)
    ]  # fmt: skip


@router.get("/variables/{name}", tags=["variables"])
async def get_variable(request: Request, name: str) -> dict[str, Any]:
    store = store_of(request)
    found = await store.get_document(VARIABLE, name)
    if found is None:
        raise HTTPException(404, f"no variable {name}")
    tags = await store.get_document(VARIABLE_TAGS, name)
    return {"name": found.name, "value": found.body, "tags": tags.body if tags else [],
            "updated": found.updated, "version": found.version}  # fmt: skip


__all__ = ["router"]
