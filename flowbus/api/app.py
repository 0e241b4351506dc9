"""The HTTP API, versioned under ``/api/v1``: runs, task runs, logs, deployments, work queues,
agents and live events, read from the store's projections and from NATS.

Every error is JSON, ``{"error": {"code", "message", "details"}}``, with the status that fits:
invalid input is a 4xx, never a 500. With a token configured, every request needs it as
``Authorization: Bearer <token>`` (compared in constant time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowbus.api import (
    agents,
    artifacts,
    audit,
    automations,
    blocks,
    deployments,
    documents,
    events,
    hooks,
    metrics,
    queues,
    runs,
    schedules,
    slots,
    tokens,
    variables,
)
from flowbus.api.auth import Authenticator
from flowbus.api.common import error_body
from flowbus.api.doors import Doors, max_body_bytes
from flowbus.api.login import add_guard, add_login
from flowbus.api.route_roles import require_role
from flowbus.broker.protocol import validation_details
from flowbus.client import Client, ClientError
from flowbus.engine.errors import FlowbusError
from flowbus.engine.store import EventStore

log = structlog.get_logger("flowbus.api")
UI_DIR = Path(__file__).parent / "ui"

#: How a refusal of the orchestrator maps to an HTTP status.
CLIENT_ERROR_STATUS = {
    "bad_request": 400,
    "unknown_deployment": 404,
    "not_found": 404,
    "invalid_parameters": 422,
    "not_cancellable": 409,
    "not_paused": 409,
    "not_retryable": 409,
    "not_completed": 409,
    "idempotency_conflict": 409,
    "sequence_gap": 409,
    "forbidden": 403,
    "invalid_input": 422,
    "invalid_events": 422,
    "invalid_deployment": 422,
    "invalid_document": 422,
    "no_orchestrator": 503,
    "unavailable": 503,
    "timeout": 504,
}


def create_app(store: EventStore, client: Client, token: str | None = None) -> FastAPI:
    """The API over an open ``store`` and a connected ``client``."""
    app = FastAPI(
        title="flowbus",
        version="1",
        description="Runs, logs, deployments, work queues and agents of flowbus.",
        openapi_url="/openapi.json",
    )
    app.state.store = store
    app.state.client = client

    auth = Authenticator(store, token)
    add_guard(app, auth)
    # Added last, so it runs first: sizes, hosts and origins before anything reads the body.
    # Without a token configured at start the Host check stays on: tokens made later (through
    # the CLI) close the API, but it still answers loopback names only.
    app.add_middleware(Doors, open_api=token is None, max_body=max_body_bytes())
    add_login(app, auth)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(exc.errors())
        return JSONResponse(error_body("invalid_request", "the request is invalid", details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.detail, dict):  # a refusal of route_roles: which role it needs
            detail = dict(exc.detail)
            body = error_body(detail.pop("code"), detail.pop("message"), detail)
            return JSONResponse(body, exc.status_code)
        code = "not_found" if exc.status_code == 404 else "http_error"
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code)

    @app.exception_handler(ClientError)
    async def refused(_: Request, exc: ClientError) -> JSONResponse:
        status = CLIENT_ERROR_STATUS.get(exc.code, 502)
        return JSONResponse(error_body(exc.code, str(exc), exc.details), status)

    @app.exception_handler(FlowbusError)
    async def flowbus_error(_: Request, exc: FlowbusError) -> JSONResponse:
        return JSONResponse(error_body("unavailable", str(exc)), 503)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("API request failed", error=repr(exc))
        return JSONResponse(error_body("internal", f"{type(exc).__name__}: {exc}"), 500)

    # Every route needs its role (route_roles.py): one dependency on every router.
    roles = [Depends(require_role("/api/v1"))]
    for resource in (runs, artifacts, deployments, schedules, blocks, variables, automations,
                     documents, queues, agents, events, tokens, audit, slots):  # fmt: skip
        app.include_router(resource.router, prefix="/api/v1", dependencies=roles)
    # /metrics, /healthz, /readyz
    app.include_router(metrics.router, dependencies=[Depends(require_role(""))])
    # Inbound webhooks: their URL's slug is the credential (no token, no role).
    app.include_router(hooks.router)

    @app.get("/api/v1", include_in_schema=False)
    async def api_index() -> dict[str, Any]:
        """What is here: the API's reference and the web UI (the address ``flowbus up``
        prints answers, rather than a 404)."""
        from flowbus import __version__

        return {"name": "flowbus", "version": __version__, "openapi": "/openapi.json",
                "reference": "docs/api.md", "web_ui": "/ui/"}  # fmt: skip

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/ui/")

    # The web UI: static files (no build step) that talk to the API above.
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
    return app
