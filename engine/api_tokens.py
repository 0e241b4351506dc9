"""API tokens with roles, kept in the store as documents of kind ``api_token``.

A token is shown once, when it is made; the store keeps its SHA-256 only (a token is 256
random bits: a plain digest cannot be reversed or guessed, so no slow hash is needed), as the
name of its document, so the API finds a request's token with one indexed read. Each holds a
role:

- ``viewer`` reads everything but secret values;
- ``operator`` also runs, cancels, resumes, retries runs and pauses queues;
- ``developer`` also deploys, and sets variables, blocks, limits, schedules and automations;
- ``admin`` also manages tokens;
- ``metrics`` reads ``/metrics`` only (a scraper's).

``$FLOWBUS_API_TOKEN`` stays an admin token named ``admin`` (it is not stored).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flowbus.engine.actors import current_actor
from flowbus.engine.audit import audit_record
from flowbus.engine.clock import canonical
from flowbus.engine.documents import delete_document, save_document
from flowbus.engine.errors import UsageError
from flowbus.engine.store import EventStore

API_TOKEN = "api_token"
#: Each role may do what the ones before it may, and more.
ROLES = ("viewer", "operator", "developer", "admin")
#: A role apart: ``/metrics`` and nothing else.
METRICS = "metrics"
ALL_ROLES = (*ROLES, METRICS)
#: The name ``$FLOWBUS_API_TOKEN`` acts under.
ENV_TOKEN_NAME = "admin"
PREFIX = "fbt_"
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)
#: A duration as the API takes it: up to four parts of up to 9999 units each (``1d12h``).
DURATION_PATTERN = r"^([1-9]\d{0,3}[smhdw]){1,4}$"


class TokenExists(UsageError):
    """A token of that name exists already."""


def admits(held: str, needed: str) -> bool:
    """Whether a token of role ``held`` may do what needs ``needed``."""
    if needed == METRICS:  # /metrics: any role reads it
        return True
    if held == METRICS:  # a scraper's token: nothing else
        return False
    return ROLES.index(held) >= ROLES.index(needed)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenView:
    """A token as listed: never the token itself."""

    name: str
    role: str
    created: str
    expires: str | None
    last_used: str | None
    created_by: str | None

    def expired(self, now: datetime | None = None) -> bool:
        if self.expires is None:
            return False
        return datetime.fromisoformat(self.expires) <= (now or datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _view(body: dict[str, Any]) -> TokenView:
    return TokenView(name=body["name"], role=body["role"], created=body["created"],
                     expires=body.get("expires"), last_used=body.get("last_used"),
                     created_by=body.get("created_by"))  # fmt: skip


async def _stored(store: EventStore) -> list[tuple[str, dict[str, Any]]]:
    return [(d.name, d.body) for d in await store.list_documents(API_TOKEN)]


async def list_tokens(store: EventStore) -> list[TokenView]:
    return sorted((_view(body) for _, body in await _stored(store)), key=lambda t: t.name)


async def any_tokens(store: EventStore) -> bool:
    return bool(await store.list_documents(API_TOKEN))


async def create_token(
    store: EventStore,
    name: str,
    role: str,
    expires_in: timedelta | None = None,
    created_by: str | None = None,
) -> str:
    """Record a new token ``name`` of ``role``; returns the token (shown once, never kept)."""
    if not _NAME.fullmatch(name):
        raise UsageError(f"token name {name!r}: lowercase letters, digits, '.', '_', '-'")
    if name == ENV_TOKEN_NAME:
        raise TokenExists(f"the name {name!r} is $FLOWBUS_API_TOKEN's")
    if role not in ALL_ROLES:
        raise UsageError(f"no role {role!r} (roles: {', '.join(ALL_ROLES)})")
    if any(body["name"] == name for _, body in await _stored(store)):
        raise TokenExists(f"a token named {name!r} exists (revoke it first)")
    if expires_in is not None and expires_in.total_seconds() <= 0:
        raise UsageError("a token's lifetime must be positive")
    token = PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    body = {
        "name": name,
        "role": role,
        "created": canonical(now),
        "expires": canonical(now + expires_in) if expires_in is not None else None,
        "last_used": None,
        "created_by": created_by,
    }
    await save_document(store, API_TOKEN, token_digest(token), body)
    return token


async def revoke_token(store: EventStore, name: str) -> None:
    """Remove the token ``name``: refused from the next request on."""
    for digest, body in await _stored(store):
        if body["name"] == name:
            await delete_document(store, API_TOKEN, digest)
            actor = current_actor()
            if actor:
                await store.append([audit_record("api_token.revoked", name, actor)])
            return
    raise UsageError(f"no token named {name!r}")


async def find_token(store: EventStore, token: str) -> TokenView | None:
    """The valid (stored, unexpired) token ``token`` is, else None."""
    if not token.startswith(PREFIX):
        return None
    return await find_digest(store, token_digest(token))


async def find_digest(store: EventStore, digest: str) -> TokenView | None:
    """The valid token whose SHA-256 is ``digest`` (what a session holds), else None."""
    document = await store.get_document(API_TOKEN, digest)
    if document is None:
        return None
    found = _view(document.body)
    return None if found.expired() else found


async def mark_used(store: EventStore, token: str, when: datetime) -> None:
    """Record when ``token`` was last used (the API does so at most once a minute per token)."""
    digest = token_digest(token)
    document = await store.get_document(API_TOKEN, digest)
    if document is not None:
        await save_document(store, API_TOKEN, digest, {**document.body,
                                                       "last_used": canonical(when)})  # fmt: skip


__all__ = [
    "ALL_ROLES",
    "API_TOKEN",
    "METRICS",
    "ROLES",
    "TokenExists",
    "TokenView",
    "admits",
    "any_tokens",
    "create_token",
    "find_digest",
    "find_token",
    "list_tokens",
    "mark_used",
    "revoke_token",
]
