"""The API's doors: request size, Host and Origin, login tries (each refusal, and what passes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from flowbus.api.app import create_app
from flowbus.api.doors import Doors, LoginLimiter, refusal
from flowbus.client import Client
from flowbus.engine.store.memory import MemoryEventStore

LOCAL = "127.0.0.1:4200"


@pytest.mark.parametrize(
    ("method", "headers", "open_api", "code"),
    [
        ("GET", {"host": LOCAL}, True, None),
        ("GET", {"host": "localhost:4200"}, True, None),
        ("GET", {"host": "[::1]:4200"}, True, None),
        ("GET", {"host": "rebind.attacker.example:4200"}, True, "host_not_allowed"),
        ("GET", {"host": "flowbus.internal:4200"}, False, None),  # a token: any name
        ("POST", {"host": LOCAL}, True, None),  # the CLI, curl: no Origin
        ("POST", {"host": LOCAL, "origin": f"http://{LOCAL}"}, True, None),  # the UI
        ("POST", {"host": LOCAL, "origin": "https://evil.example"}, True, "cross_origin"),
        ("DELETE", {"host": LOCAL, "origin": "http://127.0.0.1:9999"}, True, "cross_origin"),
        ("POST", {"host": LOCAL, "origin": "null"}, True, "cross_origin"),
        ("POST", {"host": "x.example", "origin": "https://evil.example"}, False, "cross_origin"),
        ("GET", {"host": LOCAL, "origin": "https://evil.example"}, True, None),  # reads: CORS
    ],
)
def test_hosts_and_origins(
    method: str, headers: dict[str, str], open_api: bool, code: str | None
) -> None:
    refused = refusal(method, headers, open_api)
    assert (refused[1] if refused else None) == code


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """An app that reads the whole body and answers its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def client_of(app: Any, host: str = LOCAL) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


async def test_a_body_over_the_limit_is_refused_declared_or_streamed() -> None:
    doors = Doors(echo, open_api=True, max_body=2048)
    async with client_of(doors) as http:
        assert (await http.post("/x", content=b"a" * 2048)).text == "2048"
        refused = await http.post("/x", content=b"a" * 2049)
        assert refused.status_code == 413 and refused.json()["error"]["code"] == "too_large"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for _ in range(10):
                yield b"b" * 1000

        streamed = await http.post("/x", content=chunks())
        assert streamed.status_code == 413
        rebinding = await http.get("/x", headers={"host": "evil.example"})
        assert rebinding.status_code == 421


def test_login_tries_are_limited_per_address_and_forgotten_after_the_window() -> None:
    now = [0.0]
    limiter = LoginLimiter(tries=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert not limiter.blocked("10.0.0.1")
        limiter.failed("10.0.0.1")
    assert limiter.blocked("10.0.0.1") and not limiter.blocked("10.0.0.2")
    now[0] = 61
    assert not limiter.blocked("10.0.0.1")


async def test_the_api_refuses_a_flood_of_wrong_tokens_at_login() -> None:
    app = create_app(MemoryEventStore(), Client("nats://127.0.0.1:1"), token="right-token")
    async with client_of(app) as http:
        codes = [
            (await http.post("/login", data={"token": f"guess-{n}"})).status_code for n in range(12)
        ]
        assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
        # Even the right token waits: a guesser cannot tell it found it.
        assert (await http.post("/login", data={"token": "right-token"})).status_code == 429
        too_big = await http.post("/api/v1/variables/x", content=b"x" * (2 * 1024 * 1024),
                                  headers={"authorization": "Bearer right-token"})  # fmt: skip
        assert too_big.status_code == 413
