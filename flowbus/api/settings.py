"""The API's settings, importable without loading the web stack (agents never need it)."""

from __future__ import annotations

import os

#: Prefect's port: what users of such tools expect to open.
DEFAULT_API_PORT = 4200


def api_token() -> str | None:
    """``$FLOWBUS_API_TOKEN``: the bearer token every API request must carry, if set."""
    return os.environ.get("FLOWBUS_API_TOKEN") or None


def api_tls() -> tuple[str, str] | None:
    """``$FLOWBUS_API_TLS_CERT`` and ``$FLOWBUS_API_TLS_KEY``: the API serves HTTPS with them."""
    cert = os.environ.get("FLOWBUS_API_TLS_CERT") or None
    key = os.environ.get("FLOWBUS_API_TLS_KEY") or None
    return (cert, key) if cert and key else None
