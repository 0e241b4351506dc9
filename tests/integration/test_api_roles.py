"""Every route of the HTTP API, called with a token of each role: what the role may do passes
the door (its answer is the resource's: 2xx, or a 4xx/5xx of its own), what it may not is a 403
naming the role it needs. Tokens are looked up on every request: a revoked or expired one is
refused at once, and a token never appears in an answer after the one that made it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowbus.api.app import create_app
from flowbus.api.route_roles import role_for
from flowbus.client import Client
from flowbus.engine.api_tokens import ALL_ROLES, admits, create_token, revoke_token
from flowbus.engine.store import EventStore, SqliteEventStore

#: A value for each path parameter, so every route can be called.
VALUES = {"run_id": "01a20000-0000-7000-8000-000000000001", "flow_name": "etl",
          "name": "daily", "type_name": "secret", "kind": "variable", "schedule_id": "1",
          "key": "report"}  # fmt: skip


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    opened = SqliteEventStore(tmp_path / "flowbus.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def app(store: EventStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("FLOWBUS_HOME", str(tmp_path / "home"))
    # No orchestrator answers (a closed port): a route that asks one answers 503, not 403.
    return create_app(store, Client("nats://127.0.0.1:1", timeout=0.5), token=None)


def http(app: Any, token: str | None = None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
                             headers=headers, timeout=10)  # fmt: skip


def routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route the OpenAPI document lists, and ``/metrics``."""
    found = [(method.upper(), path) for path, item in app.openapi()["paths"].items()
             for method in item]  # fmt: skip
    return [*found, ("GET", "/metrics")]


async def test_every_route_admits_exactly_its_roles(app: Any, store: EventStore) -> None:
    tokens = {role: await create_token(store, f"t-{role}", role) for role in ALL_ROLES}
    table = routes(app)
    assert len(table) > 40
    for method, path in table:
        needed = role_for(method, path)
        url = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: VALUES[m.group(1)], path)
        for role, token in tokens.items():
            admitted = admits(role, needed)
            if admitted and "stream" in path:
                continue  # a live stream: it would not end; its door is checked for refusals
            async with http(app, token) as client:
                response = await client.request(method, url, json={} if method != "GET" else None)
            if admitted:
                assert response.status_code not in (401, 403), (method, path, role, response.text)
            else:
                assert response.status_code == 403, (method, path, role, response.text)
                error = response.json()["error"]
                assert error["code"] == "forbidden" and error["details"]["needed"] == needed
                assert needed in error["message"]


async def test_who_may_do_what_in_words(app: Any) -> None:
    """The table the docs state (docs/security.md), spot-checked."""
    assert role_for("GET", "/api/v1/runs") == "viewer"
    assert role_for("POST", "/api/v1/runs/{run_id}/cancel") == "operator"
    assert role_for("POST", "/api/v1/deployments") == "developer"
    assert role_for("PUT", "/api/v1/blocks/{type_name}/{name}") == "developer"
    assert role_for("GET", "/api/v1/tokens") == "admin"
    assert role_for("POST", "/api/v1/some/new/route") == "admin"  # closed until decided
    assert role_for("GET", "/metrics") == "metrics"


async def test_no_token_or_a_bad_one_is_401_and_a_revoked_or_expired_one_at_once(
    app: Any, store: EventStore
) -> None:
    async with http(app) as client:  # no token stored yet: the API is open (loopback only)
        assert (await client.get("/api/v1/me")).json()["role"] == "admin"
    token = await create_token(store, "ops", "operator")
    short = await create_token(store, "brief", "viewer", timedelta(seconds=1))
    async with http(app) as client:
        # The first token closes the API within a second.
        for _ in range(40):
            if (await client.get("/api/v1/runs")).status_code == 401:
                break
            import asyncio

            await asyncio.sleep(0.05)
        assert (await client.get("/api/v1/runs")).status_code == 401
    async with http(app, "fbt_not-a-token") as client:
        assert (await client.get("/api/v1/runs")).status_code == 401
    async with http(app, token) as client:
        assert (await client.get("/api/v1/me")).json() == {"name": "ops", "role": "operator",
                                                           "via": "bearer"}  # fmt: skip
        await revoke_token(store, "ops")
        assert (await client.get("/api/v1/me")).status_code == 401
    import asyncio

    await asyncio.sleep(1.1)
    async with http(app, short) as client:
        assert (await client.get("/api/v1/me")).status_code == 401


async def test_tokens_through_the_api_and_never_shown_again(app: Any, store: EventStore) -> None:
    admin = await create_token(store, "root", "admin")
    viewer = await create_token(store, "watcher", "viewer")
    async with http(app, admin) as client:
        made = await client.post("/api/v1/tokens", json={"name": "ci", "role": "operator",
                                                          "expires": "90d"})  # fmt: skip
        assert made.status_code == 201, made.text
        secret = made.json()["token"]
        listed = (await client.get("/api/v1/tokens")).json()
        assert {t["name"] for t in listed} == {"root", "watcher", "ci"}
        assert secret not in str(listed) and admin not in str(listed)
        ci = next(t for t in listed if t["name"] == "ci")
        assert ci["role"] == "operator" and ci["expires"] and ci["created_by"] == "root"
        # Bad input: a clear error, nothing made or removed.
        duplicate = await client.post("/api/v1/tokens", json={"name": "ci", "role": "viewer"})
        assert duplicate.status_code == 409, duplicate.text
        for body in ({"name": "x", "role": "owner"},
                     {"name": "Bad Name", "role": "viewer"}, {"name": "y", "role": "viewer",
                                                              "expires": "soon"}):  # fmt: skip
            refused = await client.post("/api/v1/tokens", json=body)
            assert refused.status_code == 422, (body, refused.text)
        assert (await client.delete("/api/v1/tokens/nobody")).status_code == 404
        assert len((await client.get("/api/v1/tokens")).json()) == 3
    async with http(app, viewer) as client:  # only an admin manages tokens
        assert (await client.get("/api/v1/tokens")).status_code == 403
        assert (await client.post("/api/v1/tokens", json={"name": "z", "role": "admin"})
                ).status_code == 403  # fmt: skip
    async with http(app, secret) as client:
        assert (await client.get("/api/v1/me")).json()["name"] == "ci"


async def test_a_session_expires_ends_at_logout_and_needs_its_csrf_token(
    app: Any, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await create_token(store, "ops", "operator")
    async with http(app) as browser:
        logged = await browser.post("/login", data={"token": token})
        assert logged.status_code == 303
        cookies = {c.name: c for c in browser.cookies.jar}
        session, csrf = cookies["flowbus_session"], cookies["flowbus_csrf"]
        assert session.has_nonstandard_attr("HttpOnly") and not csrf.has_nonstandard_attr(
            "HttpOnly"
        )
        assert not session.secure  # plain HTTP here; over HTTPS the cookie is Secure
        assert session.expires is not None and csrf.value
        assert (await browser.get("/api/v1/me")).json()["via"] == "session"
        # A state-changing request on the session alone (what a page of another site could
        # make the browser send) is refused; with the CSRF token it reaches the route.
        assert (await browser.post("/api/v1/queues/default/pause")).status_code == 401
        with_csrf = await browser.post("/api/v1/queues/default/pause",
                                       headers={"X-CSRF-Token": csrf.value})  # fmt: skip
        assert with_csrf.status_code not in (401, 403)
        # Another site's form post, cookie and all: refused at the door by its Origin.
        cross = await browser.post("/api/v1/queues/default/pause",
                                   headers={"X-CSRF-Token": csrf.value,
                                            "Origin": "https://evil.example"})  # fmt: skip
        assert cross.status_code == 403
        # A forged or tampered cookie is no session.
        async with http(app) as forger:
            tampered = {"cookie": f"flowbus_session={session.value[:-2]}xx"}
            assert (await forger.get("/api/v1/me", headers=tampered)).status_code == 401
        await browser.post("/logout")
        assert "flowbus_session" not in {c.name for c in browser.cookies.jar}
        assert (await browser.get("/api/v1/me")).status_code == 401
        # The token revoked: a session made with it ends with it.
        await browser.post("/login", data={"token": token})
        assert (await browser.get("/api/v1/me")).status_code == 200
        await revoke_token(store, "ops")
        assert (await browser.get("/api/v1/me")).status_code == 401


async def test_a_session_lasts_its_configured_hours(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLOWBUS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWBUS_SESSION_HOURS", "0.0003")  # about a second
    app = create_app(store, Client("nats://127.0.0.1:1", timeout=0.5), token=None)
    token = await create_token(store, "ops", "operator")
    async with http(app) as browser:
        await browser.post("/login", data={"token": token})
        assert (await browser.get("/api/v1/me")).status_code == 200
        import asyncio

        await asyncio.sleep(2.2)
        assert (await browser.get("/api/v1/me")).status_code == 401
    monkeypatch.setenv("FLOWBUS_SESSION_HOURS", "soon")
    from flowbus.engine.errors import UsageError

    with pytest.raises(UsageError, match="FLOWBUS_SESSION_HOURS"):
        create_app(store, Client("nats://127.0.0.1:1"), token=None)
