"""Blocks and block types: listing (secret fields masked), one block, and saving one from its
plain fields (``PUT``: checked by its type, its secret fields encrypted with the server's own
key, which the agents share, so a secret never needs the key on a laptop)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request

from flowbus.api.common import ERRORS, store_of
from flowbus.client import ClientError
from flowbus.engine.blocks import BLOCK, BLOCK_TYPE, register_built_in, save_block_data, shown_block
from flowbus.engine.errors import FlowbusError

router = APIRouter(responses=ERRORS)


@router.get("/blocks", tags=["blocks"])
async def list_blocks(request: Request) -> list[dict[str, Any]]:
    """Every block, secret fields masked (``********``)."""
    return [shown_block(doc) for doc in await store_of(request).list_documents(BLOCK)]


@router.get("/blocks/{type_name}/{name}", tags=["blocks"])
async def get_block(request: Request, type_name: str, name: str) -> dict[str, Any]:
    found = await store_of(request).get_document(BLOCK, f"{type_name}/{name}")
    if found is None:
        raise HTTPException(404, f"no block {type_name}/{name}")
    return shown_block(found)


@router.get("/block-types", tags=["blocks"])
async def list_block_types(request: Request) -> list[dict[str, Any]]:
    """Registered block types with their JSON schema and secret fields."""
    return [{"type": d.name, **d.body} for d in await store_of(request).list_documents(BLOCK_TYPE)]


@router.put("/blocks/{type_name}/{name}", tags=["blocks"])
async def put_block(
    request: Request, type_name: str, name: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """Save a block from its plain fields: checked by its type, secrets encrypted here; the
    block as stored (secret fields encrypted)."""
    store = store_of(request)
    await register_built_in(store)
    try:
        saved = await save_block_data(store, type_name, name, fields)
    except (FlowbusError, ValueError) as exc:  # ValueError: pydantic's ValidationError
        raise ClientError("invalid_document", str(exc)) from exc
    return saved.to_dict()


__all__ = ["router"]
