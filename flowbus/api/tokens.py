"""Who am I (``/me``), and the API's tokens (an ``admin``'s): list, create (the token is in
the answer, once), revoke."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from flowbus.api.common import ERRORS, store_of
from flowbus.engine.api_tokens import (
    DURATION_PATTERN,
    NAME_PATTERN,
    TokenExists,
    create_token,
    list_tokens,
    revoke_token,
)
from flowbus.engine.clock import parse_duration
from flowbus.engine.errors import UsageError

router = APIRouter(responses=ERRORS)


class NewToken(BaseModel):
    """A token to make: its name, its role, and how long it lives (``90d``; none: for ever)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN)
    role: Literal["viewer", "operator", "developer", "admin", "metrics"]
    expires: str | None = Field(
        default=None, pattern=DURATION_PATTERN, examples=["90d", "12h", "1d12h"]
    )


def caller(request: Request) -> Any:
    return request.state.identity


@router.get("/me", tags=["tokens"])
async def me(request: Request) -> dict[str, Any]:
    """The caller: its token's name and role (what the UI may show it)."""
    identity = caller(request)
    return {"name": identity.name, "role": identity.role, "via": identity.via}


@router.get("/tokens", tags=["tokens"])
async def get_tokens(request: Request) -> list[dict[str, Any]]:
    """Every token: name, role, created, expiry, last use. Never a token itself."""
    return [t.to_dict() for t in await list_tokens(store_of(request))]


@router.post("/tokens", status_code=201, tags=["tokens"])
async def post_token(request: Request, new: NewToken) -> dict[str, Any]:
    """Make a token; the answer holds it, and nothing will show it again."""
    try:
        lifetime = parse_duration(new.expires) if new.expires else None
        token = await create_token(store_of(request), new.name, new.role, lifetime,
                                   created_by=caller(request).name)  # fmt: skip
    except TokenExists as exc:
        raise HTTPException(409, str(exc)) from exc
    except UsageError as exc:
        raise HTTPException(422, str(exc)) from exc
    return {"name": new.name, "role": new.role, "token": token}


@router.delete("/tokens/{name}", tags=["tokens"])
async def delete_token(request: Request, name: str) -> dict[str, Any]:
    try:
        await revoke_token(store_of(request), name)
    except UsageError as exc:
        raise HTTPException(404, str(exc)) from exc
    return {"name": name, "revoked": True}


__all__ = ["router"]
