"""Connecting to NATS the way a long-running daemon should."""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Callable
from typing import Any

import nats
import structlog
from nats.aio.client import Client

from flowbus.broker.errors import BrokerError

log = structlog.get_logger("flowbus.nats")

DEFAULT_URL = "nats://127.0.0.1:4222"


def nats_url() -> str:
    """``$FLOWBUS_NATS_URL`` (comma-separated for a cluster), else where a running ``flowbus up``
    says it listens (``$FLOWBUS_HOME/up.json``), else the local default."""
    return _configured_url() or DEFAULT_URL


def nats_configured() -> bool:
    """Whether there is a flowbus server to reach: ``$FLOWBUS_NATS_URL`` is set, or a
    ``flowbus up`` runs on this machine (the local default alone does not count)."""
    return _configured_url() is not None


def _configured_url() -> str | None:
    configured = os.environ.get("FLOWBUS_NATS_URL")
    if configured:
        return configured
    from flowbus.engine import settings

    try:
        found = json.loads((settings.home() / "up.json").read_text())
        os.kill(int(found["pid"]), 0)  # a stack that died without cleaning up does not count
        return str(found["nats_url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def manages_streams() -> bool:
    """Whether this process's NATS credential may create and update flowbus's streams: any
    but the restricted users of ``flowbus auth`` (services, viewers, agents), for which the
    orchestrator makes them."""
    creds = os.environ.get("FLOWBUS_NATS_CREDS")
    if not creds:
        return True
    from pathlib import Path

    from flowbus.broker.nats_auth import own_inbox

    return own_inbox(Path(creds)) is None


def _auth_options() -> dict[str, Any]:
    """User/password, token, credentials file and TLS, from ``$FLOWBUS_NATS_*``."""
    env = os.environ
    options: dict[str, Any] = {}
    if env.get("FLOWBUS_NATS_USER"):
        options["user"] = env["FLOWBUS_NATS_USER"]
        options["password"] = env.get("FLOWBUS_NATS_PASSWORD", "")
    if env.get("FLOWBUS_NATS_TOKEN"):
        options["token"] = env["FLOWBUS_NATS_TOKEN"]
    if env.get("FLOWBUS_NATS_CREDS"):
        options["user_credentials"] = env["FLOWBUS_NATS_CREDS"]
        from pathlib import Path

        from flowbus.broker.nats_auth import own_inbox

        prefix = own_inbox(Path(env["FLOWBUS_NATS_CREDS"]))
        if prefix is not None:  # a user of flowbus auth: it may read its own inbox only
            options["inbox_prefix"] = prefix
    if env.get("FLOWBUS_NATS_TLS_CA") or env.get("FLOWBUS_NATS_TLS_CERT"):
        context = ssl.create_default_context(cafile=env.get("FLOWBUS_NATS_TLS_CA") or None)
        if env.get("FLOWBUS_NATS_TLS_CERT"):
            context.load_cert_chain(env["FLOWBUS_NATS_TLS_CERT"], env.get("FLOWBUS_NATS_TLS_KEY"))
        options["tls"] = context
    return options


class ConnectionLog:
    """One structured log line per disconnect and per reconnect of a connection.

    nats-py's default error callback logs a traceback for every failed attempt to reconnect
    (one each half second while a server restarts); a daemon's log should say what happened
    once. ``on_reconnect`` callbacks run on the connection's loop after each reconnect.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False
        self.on_reconnect: list[Callable[[], None]] = []
        #: The connection, once made: a close asked for is not news.
        self.client: Client | None = None

    def _closing(self) -> bool:
        client = self.client
        return client is not None and (client.is_closed or client.is_draining)

    async def error(self, exc: Exception) -> None:
        if not self.down and not self._closing():  # while down, each attempt says the same
            log.warning("NATS connection error", connection=self.name,
                        error=str(exc) or type(exc).__name__)  # fmt: skip

    async def disconnected(self) -> None:
        if self._closing():
            return
        if not self.down:
            self.down = True
            log.warning("disconnected from NATS; reconnecting", connection=self.name)

    async def reconnected(self) -> None:
        self.down = False
        log.info("reconnected to NATS", connection=self.name)
        for callback in self.on_reconnect:
            callback()


def connection_log(client: Client) -> ConnectionLog | None:
    """The log of a connection ``connect`` made (where to add an ``on_reconnect``)."""
    found: ConnectionLog | None = getattr(client, "_flowbus_connection_log", None)
    return found


async def connect(url: str | None = None, name: str = "flowbus", **options: Any) -> Client:
    """A NATS connection that reconnects for ever (daemons must outlive a server restart).

    nats-py gives up after 60 attempts by default and buffers plain publishes while
    disconnected; flowbus sends everything that matters through JetStream, which acks.
    Disconnects and reconnects are logged once each (``ConnectionLog``).
    """
    servers = [part.strip() for part in (url or nats_url()).split(",") if part.strip()]
    events = ConnectionLog(name)
    settings: dict[str, Any] = {
        "servers": servers,
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 5,
        "allow_reconnect": True,
        # A server whose link died without a word is given up after two unanswered pings
        # (about 10 s; nats-py's default is 2 minutes) and another node of the cluster used.
        "ping_interval": 5,
        "max_outstanding_pings": 2,
        "error_cb": events.error,
        "disconnected_cb": events.disconnected,
        "reconnected_cb": events.reconnected,
        **_auth_options(),
        **options,
    }
    try:
        client = await nats.connect(**settings)
        events.client = client
        client._flowbus_connection_log = events  # type: ignore[attr-defined]
        return client
    except Exception as exc:
        raise BrokerError(f"cannot connect to NATS at {', '.join(servers)}: {exc!r}") from exc
