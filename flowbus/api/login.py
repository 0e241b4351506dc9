"""The doors of people and programs: the guard every request passes (who is it?), the login
form, the session it opens and the logout that ends it."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from flowbus.api.auth import CSRF_COOKIE, OPEN, SESSION_COOKIE, Authenticator
from flowbus.api.doors import LoginLimiter
from flowbus.engine.actors import actor_var

Next = Callable[[Request], Awaitable[Response]]


def _unauthorized() -> JSONResponse:
    body = {"error": {"code": "unauthorized", "details": None,
                      "message": "a valid bearer token (or a session and its X-CSRF-Token) is "
                                 "required"}}  # fmt: skip
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def add_guard(app: FastAPI, auth: Authenticator) -> None:
    """Every request: its caller set as ``request.state.identity``, or refused (401 for the
    API and ``/metrics``, the login page for the UI). ``/healthz`` and ``/readyz`` stay open
    for probes: they tell nothing."""

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if not await auth.required():
            request.state.identity = OPEN
            actor_var.set(OPEN.name)
            return await call_next(request)
        guarded = path.startswith("/api/") or path == "/metrics"
        page = path.startswith("/ui") and path != "/ui/app.css"
        if guarded or page:
            identity = await auth.identify(request)
            if identity is None:
                return _unauthorized() if guarded else RedirectResponse("/login", status_code=303)
            request.state.identity = identity
            # What this request causes is recorded as the token's doing (engine/actors.py).
            actor_var.set(identity.name)
        return await call_next(request)


def login_page(error: str = "", status: int = 200) -> HTMLResponse:
    message = f'<p class="notice">{html.escape(error)}</p>' if error else ""
    return HTMLResponse(
        f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>flowbus: log in</title><link rel="stylesheet" href="/ui/app.css"></head>
<body><header><span class="brand">flowbus</span></header>
<main><form class="panel" method="post" action="/login" style="max-width:420px;margin:60px auto">
<h1>Log in</h1>{message}
<div class="form-row"><label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required></div>
<button type="submit">Log in</button></form></main></body></html>""",
        status_code=status,
    )


def add_login(app: FastAPI, auth: Authenticator) -> None:
    """``/login``: the form, and the post that opens a session (a few failed tries per client
    address a minute, then 429); ``/logout`` ends it. Without tokens both lead to the UI."""
    logins = LoginLimiter()

    @app.get("/login", include_in_schema=False)
    async def login_form() -> Response:
        return login_page() if await auth.required() else RedirectResponse("/ui/")

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if not await auth.required():
            return RedirectResponse("/ui/", status_code=303)
        address = request.client.host if request.client else "unknown"
        if logins.blocked(address):
            return login_page("Too many failed tries: wait a minute.", status=429)
        form = parse_qs((await request.body()).decode(errors="replace"))
        token = (form.get("token") or [""])[0].strip()
        if not token or await auth.from_token(token, "session") is None:
            logins.failed(address)
            return login_page("That is not a valid token.", status=401)
        session, csrf = auth.session_for(token)
        secure = request.url.scheme == "https"
        age = int(auth.hours * 3600)
        response = RedirectResponse("/ui/", status_code=303)
        response.set_cookie(SESSION_COOKIE, session, max_age=age, httponly=True,
                            samesite="strict", secure=secure, path="/")  # fmt: skip
        # Readable by the UI's own script (it sends it back as X-CSRF-Token), not by others.
        response.set_cookie(CSRF_COOKIE, csrf, max_age=age, httponly=False,
                            samesite="strict", secure=secure, path="/")  # fmt: skip
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response


__all__ = ["add_guard", "add_login", "login_page"]
