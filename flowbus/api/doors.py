"""The API's own doors, before any route: request size, who the browser thinks it talks to, and
how fast anyone may guess the token.

- A request body larger than ``$FLOWBUS_API_MAX_BODY_BYTES`` (default 1 MiB) is refused with
  413 before it is read whole (a declared length at once, a streamed one as it passes the limit).
- Without a token the API listens on loopback only, and a web page from elsewhere may still
  reach it through the browser: a ``Host`` other than a loopback name is refused (DNS
  rebinding: an attacker's name resolving to 127.0.0.1), and so is a state-changing request
  whose ``Origin`` is not the API's own (a form or fetch from another site). With a token the
  Origin check stays: the session cookie must not be usable from another site either.
- ``/login`` allows a few failed tries per client address per minute (429 after).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from flowbus.engine.errors import UsageError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY = 1024 * 1024
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def max_body_bytes() -> int:
    raw = os.environ.get("FLOWBUS_API_MAX_BODY_BYTES")
    if raw is None:
        return DEFAULT_MAX_BODY
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1024:
        raise UsageError(f"FLOWBUS_API_MAX_BODY_BYTES={raw!r}: a number of bytes, at least 1024")
    return value


class _TooLarge(Exception):
    pass


def _hostname(host: str) -> str:
    """``host`` of a Host header (``name:port``, ``[v6]:port``) without its port."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def refusal(method: str, headers: dict[str, str], open_api: bool) -> tuple[int, str, str] | None:
    """(status, code, message) for a request the doors refuse, from its method and headers;
    None when it may pass. ``open_api``: no token is set."""
    host = headers.get("host", "")
    if open_api and _hostname(host.lower()) not in LOOPBACK_NAMES:
        return (
            421,
            "host_not_allowed",
            (f"Host {host!r} is not this API's: without a token it answers loopback names only"),
        )
    origin = headers.get("origin")
    if method not in SAFE_METHODS and origin is not None and origin != "null":
        if urlsplit(origin).netloc.lower() != host.lower():
            return (
                403,
                "cross_origin",
                f"a {method} from {origin} is refused: not this API's origin",
            )
    elif method not in SAFE_METHODS and origin == "null":
        return 403, "cross_origin", f"a {method} from an opaque origin is refused"
    return None


class Doors:
    """ASGI middleware applying ``refusal`` and the body limit to every HTTP request."""

    def __init__(self, app: App, open_api: bool, max_body: int) -> None:
        self.app = app
        self.open_api = open_api
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refused = refusal(scope["method"], headers, self.open_api)
        if refused is None and int(headers.get("content-length") or 0) > self.max_body:
            refused = 413, "too_large", f"the request body is over {self.max_body} bytes"
        if refused is not None:
            await _answer(send, *refused)
            return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except _TooLarge:
            if not started:
                await _answer(
                    send, 413, "too_large", f"the request body is over {self.max_body} bytes"
                )


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message, "details": None}})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class LoginLimiter:
    """At most ``tries`` failed logins per client address in any ``window`` seconds."""

    def __init__(
        self, tries: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.tries = tries
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float]:
        now = self.clock()
        failures = self._failures.setdefault(address, deque())
        while failures and now - failures[0] > self.window:
            failures.popleft()
        if not failures:
            self._failures.pop(address, None)
        return failures

    def blocked(self, address: str) -> bool:
        return len(self._recent(address)) >= self.tries

    def failed(self, address: str) -> None:
        self._recent(address)
        self._failures.setdefault(address, deque()).append(self.clock())
