"""Serving the API with uvicorn on the caller's event loop, next to the daemons."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import structlog
import uvicorn

from flowbus.api.settings import api_tls, api_token
from flowbus.client import Client
from flowbus.engine.errors import UsageError
from flowbus.engine.store import EventStore

log = structlog.get_logger("flowbus.api")


class ApiServer:
    """The API on ``host:port`` (port 0: a free one) until ``stop()``.

    Without ``$FLOWBUS_API_TOKEN`` it refuses any host but 127.0.0.1: an open API on a network
    would let anyone run and cancel flows.
    """

    def __init__(
        self, store: EventStore, nats_url: str, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.token = api_token()
        if self.token is None and host not in ("127.0.0.1", "localhost"):
            raise UsageError(
                f"the API may listen on {host} only with $FLOWBUS_API_TOKEN set; "
                "without a token it binds 127.0.0.1"
            )
        self.tls = api_tls()
        if self.tls is not None:
            for path in self.tls:
                if not os.path.isfile(path):
                    raise UsageError(f"the API's TLS file {path} does not exist")
        self.store = store
        self.nats_url = nats_url
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: Client | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    async def start(self) -> None:
        from flowbus.api.app import create_app

        self._client = Client(self.nats_url)
        await self._client.connect()
        app = create_app(self.store, self._client, self.token)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without, a response written in two parts waits for
        # the client's delayed ACK (40 ms on Linux) before its second part goes out.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            await self._client.close()
            raise UsageError(
                f"the API cannot listen on {self.host}:{self.port}: {exc.strerror} "
                "(choose another --api-port; 0 takes a free one)"
            ) from exc
        self.port = sock.getsockname()[1]
        cert, key = self.tls if self.tls else (None, None)
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                                ssl_certfile=cert, ssl_keyfile=key)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="api")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
            await asyncio.sleep(0.01)
        log.info("API listening", url=self.url, token=self.token is not None)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 10)
        if self._client is not None:
            await self._client.close()
