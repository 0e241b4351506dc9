"""The local stack behind ``flowbus up``: a nats-server (unless ``$FLOWBUS_NATS_URL`` names one)
and the daemons, in one foreground process that stops everything it started on Ctrl-C/SIGTERM.

While it runs, ``$FLOWBUS_HOME/up.json`` says where NATS listens, for other flowbus commands.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flowbus.agents import Recorder
from flowbus.broker import EmbeddedNatsServer, connect, ensure_streams
from flowbus.engine import settings
from flowbus.engine.store import EventStore, store_from_url

DEFAULT_PORT = 4222


@dataclass
class StackInfo:
    """Where the running stack listens: what ``up.json`` holds and ``flowbus up`` prints."""

    nats_url: str
    nats_pid: int | None
    store_url: str
    pid: int = field(default_factory=os.getpid)
    notes: list[str] = field(default_factory=list)


def discovery_file() -> Path:
    return settings.home() / "up.json"


class LocalStack:
    """Starts NATS (embedded unless configured) and the recorder; ``stop()`` undoes it all."""

    def __init__(self, port: int = DEFAULT_PORT, sync: str = "default") -> None:
        self.port = port
        self.sync = sync
        self.server: EmbeddedNatsServer | None = None
        self.store: EventStore | None = None
        self.recorder: Recorder | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.info: StackInfo | None = None

    async def start(self) -> StackInfo:
        notes = []
        url = os.environ.get("FLOWBUS_NATS_URL")
        if url is None:
            self.server = EmbeddedNatsServer(
                settings.home() / "nats", port=self.port, sync=self.sync, fallback_to_free_port=True
            )
            # From this (main) thread, which lives as long as the stack: see EmbeddedNatsServer.
            self.server.start()
            url = self.server.url
            if self.port and self.server.port != self.port:
                notes.append(f"port {self.port} is taken; nats-server listens on {url} instead")
        client = await connect(url, name="flowbus-up")
        await ensure_streams(client.jetstream())
        self.store = store_from_url()
        await self.store.open()
        self.recorder = Recorder(client, self.store)
        self._tasks.append(asyncio.create_task(self.recorder.run(), name="recorder"))
        self.info = StackInfo(url, self.server.pid if self.server else None, self.store.url)
        self.info.notes = notes
        discovery_file().parent.mkdir(parents=True, exist_ok=True)
        discovery_file().write_text(json.dumps(self.info.__dict__, indent=2))
        return self.info

    async def wait(self) -> None:
        """Until a daemon ends on its own (which is an error) or the stack is stopped."""
        if self._tasks:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)

    async def stop(self) -> None:
        """Stop the daemons, close connections, stop the nats-server by PID."""
        if self.recorder is not None:
            self.recorder.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=10)
            for task in pending:
                task.cancel()
        if self.recorder is not None:
            # close, not drain: drain can wait out its 30 s timeout on the pull subscription, and
            # whatever the recorder did not ack is redelivered to the next one (and deduplicated).
            await self.recorder.client.close()
        if self.store is not None:
            await self.store.close()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
        if self.info is not None:
            discovery_file().unlink(missing_ok=True)


async def run_until_signalled(stack: LocalStack, started: Callable[[StackInfo], None]) -> None:
    """Run the stack in the foreground; the first SIGINT/SIGTERM stops it cleanly."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        started(await stack.start())
        waiter = asyncio.create_task(stack.wait())
        await asyncio.wait([waiter, asyncio.create_task(stopping.wait())],
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        # A second signal while stopping interrupts the stop itself (default handlers again).
        await stack.stop()
