"""Who may use the API and the UI when ``$FLOWBUS_API_TOKEN`` is set.

API clients send ``Authorization: Bearer <token>``. A browser logs in once with the token on
``/login`` and then carries a session cookie (``EventSource`` cannot send headers): the cookie
is an HMAC of the token, so it reveals nothing, needs no server-side state, and every session
ends when the token changes. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from flowbus.api.doors import LoginLimiter

SESSION_COOKIE = "flowbus_session"


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"flowbus web session", hashlib.sha256).hexdigest()


def authorized(request: Request, token: str) -> bool:
    """A valid bearer header or session cookie."""
    bearer = request.headers.get("authorization", "")
    if hmac.compare_digest(bearer.encode(), f"Bearer {token}".encode()):
        return True
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return hmac.compare_digest(cookie.encode(), session_value(token).encode())


def guard(request: Request, token: str) -> Response | None:
    """The answer to a request that may not pass: 401 JSON for the API, the login page for
    the UI; None when it may."""
    path = request.url.path
    # /healthz and /readyz stay open for probes (they tell nothing); /metrics needs the token.
    guarded = path.startswith("/api/") or path == "/metrics"
    if guarded and not authorized(request, token):
        body = {"error": {"code": "unauthorized", "message": "a valid bearer token is required",
                          "details": None}}  # fmt: skip
        return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    if path.startswith("/ui") and path != "/ui/app.css" and not authorized(request, token):
        return RedirectResponse("/login", status_code=303)
    return None


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


async def log_in(request: Request, token: str) -> HTMLResponse | RedirectResponse:
    """Check the posted token; on success set the session cookie and go to the UI."""
    form = parse_qs((await request.body()).decode(errors="replace"))
    given = (form.get("token") or [""])[0]
    if not hmac.compare_digest(given.encode(), token.encode()):
        return login_page("That is not the API token.", status=401)
    response = RedirectResponse("/ui/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE, session_value(token), httponly=True, samesite="strict", path="/"
    )
    return response


def add_login(app: FastAPI, token: str | None) -> None:
    """``/login``: the form, and the post that sets the session (a few failed tries per client
    address a minute, then 429). Without a token both lead to the UI."""
    logins = LoginLimiter()

    @app.get("/login", include_in_schema=False)
    async def login_form() -> Response:
        return login_page() if token is not None else RedirectResponse("/ui/")

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if token is None:
            return RedirectResponse("/ui/")
        address = request.client.host if request.client else "unknown"
        if logins.blocked(address):
            return login_page("Too many failed tries: wait a minute.", status=429)
        answer = await log_in(request, token)
        if answer.status_code == 401:
            logins.failed(address)
        return answer
