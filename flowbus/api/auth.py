"""Who is calling the API and the UI: a bearer token, or a browser's session.

The API is open (everyone ``admin``, on loopback only) until it has a token: ``$FLOWBUS_API_TOKEN``
(an admin named ``admin``) or any token of ``flowbus token create`` (``engine/api_tokens.py``).
Then every ``/api/`` request and ``/metrics`` needs one:

- API clients send ``Authorization: Bearer <token>``; it is looked up on every request, so a
  revoked or expired token is refused from the next request on.
- A browser logs in once on ``/login`` with its token and gets a session cookie (``EventSource``
  cannot send headers): ``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS, signed with the
  session key (``$FLOWBUS_SESSION_KEYS``), holding the token's digest and an expiry
  (``$FLOWBUS_SESSION_HOURS``, default 12). The token behind it is checked on every request
  too. ``/logout`` ends it. A state-changing request on a session must also carry
  ``X-CSRF-Token``, the value of the ``flowbus_csrf`` cookie the login set (a page of another
  site can neither read that cookie nor set the header), besides the Origin check of
  ``doors.py``.

What a caller may do is its role's (``route_roles.py``). Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from fastapi import Request

from flowbus.engine.api_tokens import (
    ENV_TOKEN_NAME,
    any_tokens,
    find_digest,
    find_token,
    mark_used,
    token_digest,
)
from flowbus.engine.errors import UsageError
from flowbus.engine.keys import SESSION_KEYS
from flowbus.engine.store import EventStore

SESSION_COOKIE = "flowbus_session"
CSRF_COOKIE = "flowbus_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: How long "the store holds tokens" is believed before it is asked again.
TOKENS_KNOWN_SECONDS = 1.0
#: A token's ``last_used`` is written at most this often.
MARK_USED_SECONDS = 60.0


def session_hours() -> float:
    raw = os.environ.get("FLOWBUS_SESSION_HOURS", "12")
    try:
        hours = float(raw)
    except ValueError:
        hours = 0.0
    if hours <= 0:
        raise UsageError(f"FLOWBUS_SESSION_HOURS={raw!r}: a positive number of hours")
    return hours


@dataclass(frozen=True)
class Identity:
    """Who made a request: a token's name and role; ``via`` says how it was shown."""

    name: str
    role: str
    via: str  # "bearer", "session" or "open"


OPEN = Identity("local", "admin", "open")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Authenticator:
    """Identifies requests against ``$FLOWBUS_API_TOKEN`` and the store's tokens."""

    def __init__(self, store: EventStore, env_token: str | None) -> None:
        self.store = store
        self.env_token = env_token
        self.hours = session_hours()
        self._keys = SESSION_KEYS.keys(create=True)
        self._tokens_known: tuple[float, bool] = (-TOKENS_KNOWN_SECONDS, False)
        self._marked: dict[str, float] = {}

    async def required(self) -> bool:
        """Whether requests need a token: one is configured or stored."""
        if self.env_token is not None:
            return True
        at, known = self._tokens_known
        if time.monotonic() - at >= TOKENS_KNOWN_SECONDS:
            known = await any_tokens(self.store)
            self._tokens_known = (time.monotonic(), known)
        return known

    async def from_token(self, token: str, via: str) -> Identity | None:
        if self.env_token is not None and hmac.compare_digest(token.encode(),
                                                              self.env_token.encode()):  # fmt: skip
            return Identity(ENV_TOKEN_NAME, "admin", via)
        found = await find_token(self.store, token)
        if found is None:
            return None
        now = time.monotonic()
        if now - self._marked.get(found.name, -MARK_USED_SECONDS) >= MARK_USED_SECONDS:
            self._marked[found.name] = now
            await mark_used(self.store, token, datetime.now(UTC))
        return Identity(found.name, found.role, via)

    async def identify(self, request: Request) -> Identity | None:
        """The caller of ``request``, or None when it showed no valid token or session."""
        bearer = request.headers.get("authorization", "")
        if bearer.startswith("Bearer "):
            return await self.from_token(bearer[7:].strip(), "bearer")
        session = self._session(request.cookies.get(SESSION_COOKIE, ""))
        if session is None:
            return None
        digest, nonce = session
        if request.method not in SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(), self.csrf_value(nonce).encode()):
                return None
        return await self._from_digest(digest)

    async def _from_digest(self, digest: str) -> Identity | None:
        """A session's token, checked again: revoked or expired, the session ends with it."""
        if self.env_token is not None and hmac.compare_digest(
            digest.encode(), token_digest(self.env_token).encode()
        ):
            return Identity(ENV_TOKEN_NAME, "admin", "session")
        found = await find_digest(self.store, digest)
        return Identity(found.name, found.role, "session") if found is not None else None

    # --- sessions ----------------------------------------------------------------------------

    def _sign(self, payload: bytes, key: bytes) -> str:
        return _b64(hmac.new(key, payload, hashlib.sha256).digest())

    def session_for(self, token: str) -> tuple[str, str]:
        """A new session of ``token``: (the session cookie's value, the CSRF cookie's)."""
        nonce = secrets.token_urlsafe(16)
        expires = int(time.time() + self.hours * 3600)
        payload = orjson.dumps({"d": token_digest(token), "n": nonce, "e": expires})
        value = _b64(payload) + "." + self._sign(payload, self._keys[0])
        return value, self.csrf_value(nonce)

    def csrf_value(self, nonce: str) -> str:
        return self._sign(b"csrf:" + nonce.encode(), self._keys[0])

    def _session(self, value: str) -> tuple[str, str] | None:
        """(token digest, nonce) of a well-signed, unexpired session cookie, else None."""
        try:
            encoded, mac = value.split(".", 1)
            payload = _unb64(encoded)
        except ValueError:
            return None
        if not any(hmac.compare_digest(mac, self._sign(payload, key)) for key in self._keys):
            return None
        try:
            data = orjson.loads(payload)
            digest, nonce, expires = str(data["d"]), str(data["n"]), int(data["e"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return (digest, nonce) if expires > time.time() else None


__all__ = ["CSRF_COOKIE", "OPEN", "SESSION_COOKIE", "Authenticator", "Identity"]
