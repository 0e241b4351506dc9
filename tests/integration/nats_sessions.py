"""A connection under one of ``flowbus auth``'s credentials that records what the nats-server
refused it: tests assert a refusal is the server's own "Permissions Violation"."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from flowbus.broker.nats_auth import own_inbox


class Session:
    """One role's connection, recording what the server refused it."""

    def __init__(self, client: Client, refused: list[str]) -> None:
        self.client = client
        self.refused = refused
        self.js = client.jetstream(timeout=2)

    async def refuses(self, action: Callable[[], Awaitable[Any]]) -> str:
        """Run ``action``; the server's "Permissions Violation" for it (asserted)."""
        before = len(self.refused)
        with contextlib.suppress(Exception):  # a refused request: no answer, or an error
            await action()
        await self.client.flush()
        for _ in range(50):
            if len(self.refused) > before:
                return self.refused[-1]
            await asyncio.sleep(0.05)
        raise AssertionError("the server did not refuse it")

    async def allows(self, action: Callable[[], Awaitable[Any]]) -> Any:
        before = len(self.refused)
        result = await action()
        await self.client.flush()
        assert len(self.refused) == before, self.refused[before:]
        return result


async def connect_as(url: str, path: Path) -> Session:
    """A session under the credentials file ``path``."""
    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc))

    options: dict[str, Any] = {"user_credentials": str(path), "error_cb": on_error}
    prefix = own_inbox(path)
    if prefix is not None:
        options["inbox_prefix"] = prefix
    return Session(await nats.connect(url, **options), refused)
