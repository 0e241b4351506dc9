"""The local stack behind ``flowbus up``: a nats-server (unless ``$FLOWBUS_NATS_URL`` names one),
the orchestrator and one agent on the ``default`` queue, in one foreground process that stops
everything it started on Ctrl-C/SIGTERM.

While it runs, ``$FLOWBUS_HOME/up.json`` says where NATS listens, for other flowbus commands.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from flowbus.agents import Agent, AgentSettings, Orchestrator
from flowbus.agents.lifecycle import settle_heap
from flowbus.api.settings import DEFAULT_API_PORT
from flowbus.broker import EmbeddedNatsServer, connect, ensure_streams
from flowbus.broker.server import port_is_free
from flowbus.engine import settings
from flowbus.engine.errors import FlowbusError
from flowbus.engine.store import EventStore, store_from_url

DEFAULT_PORT = 4222
log = structlog.get_logger("flowbus.up")


@dataclass
class StackInfo:
    """Where the running stack listens: what ``up.json`` holds and ``flowbus up`` prints."""

    nats_url: str
    nats_pid: int | None
    store_url: str
    api_url: str = ""
    api_token: bool = False
    agent: str = ""
    queues: list[str] = field(default_factory=list)
    concurrency: int = 0
    pid: int = field(default_factory=os.getpid)
    notes: list[str] = field(default_factory=list)


def discovery_file() -> Path:
    return settings.home() / "up.json"


class LocalStack:
    """Starts NATS (embedded unless configured), the orchestrator and an agent; ``stop()``
    undoes it all. ``agent=None`` starts no agent."""

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        sync: str = "default",
        agent: AgentSettings | None = None,
        api_port: int | None = DEFAULT_API_PORT,
    ) -> None:
        self.port = port
        self.api_port = api_port
        self.api: Any = None  # an ApiServer, imported when the API starts
        self.api_store: EventStore | None = None
        self.sync = sync
        self.agent_settings = agent
        self.server: EmbeddedNatsServer | None = None
        self.store: EventStore | None = None
        self.orchestrator: Orchestrator | None = None
        self.agent: Agent | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
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
        client = await connect(url, name="flowbus-orchestrator")
        await ensure_streams(client.jetstream())
        self.store = store_from_url()
        await self.store.open()
        self.orchestrator = Orchestrator(client, self.store)
        await self.orchestrator.start()
        self.info = StackInfo(url, self.server.pid if self.server else None, self.store.url)
        self.info.notes = notes
        if self.api_port is not None:
            await self._start_api(url)
        self._tasks.append(asyncio.create_task(self._until_stopped(), name="orchestrator"))
        if self.agent_settings is not None:
            # Its runs' events are recorded here directly, and new runs go straight to it while
            # it is idle: no trips through the queue and the events stream (local_lane.py).
            local = self.orchestrator.local_records
            self.agent = Agent(await connect(url, name="flowbus-agent"), self.agent_settings, url,
                               recorder=local)  # fmt: skip
            self.orchestrator.hand_over_to(self.agent)
            self._tasks.append(asyncio.create_task(self.agent.run(), name="agent"))
            self.info.agent = self.agent_settings.name
            self.info.queues = list(self.agent_settings.queues)
            self.info.concurrency = self.agent_settings.concurrency
        discovery_file().parent.mkdir(parents=True, exist_ok=True)
        discovery_file().write_text(json.dumps(self.info.__dict__, indent=2))
        settle_heap()
        return self.info

    async def wait(self) -> None:
        """Until a daemon ends on its own (which is an error) or the stack is stopped."""
        if self._tasks:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)

    async def _start_api(self, nats_url: str) -> None:
        from flowbus.api.server import ApiServer

        assert self.info is not None and self.api_port is not None
        self.api_store = store_from_url()  # its own connection: reads never wait on the writer
        await self.api_store.open()
        port = self.api_port
        if port and not port_is_free(port):
            self.info.notes.append(f"port {port} is taken; the API listens on a free port instead")
            port = 0
        self.api = ApiServer(self.api_store, nats_url, port=port)
        try:
            await self.api.start()
        except FlowbusError as exc:  # taken between the check and the bind: another process
            if not port or "already in use" not in str(exc):
                raise
            self.info.notes.append(f"port {port} is taken; the API listens on a free port instead")
            self.api = ApiServer(self.api_store, nats_url, port=0)
            await self.api.start()
        self.info.api_url = self.api.url
        self.info.api_token = self.api.token is not None

    async def _until_stopped(self) -> None:
        assert self.orchestrator is not None
        await self.orchestrator.wait()

    async def stop(self) -> None:
        """Stop the agent (its runs finish or are handed back), then the orchestrator, close
        connections, stop the nats-server by PID. Calling it again does nothing. No step may
        hang the stop: each has a time limit, and one that overruns is logged and left."""
        if self._stopped:
            return
        self._stopped = True
        if self.api is not None:
            await _bounded("API stop", self.api.stop(), 15)
        if self.api_store is not None:
            await _bounded("API store close", self.api_store.close(), 10)
        if self.agent is not None:
            self.agent.stop()
            grace = self.agent.settings.grace_seconds + 30
            agent_tasks = [t for t in self._tasks if t.get_name() == "agent"]
            await _bounded("agent drain", asyncio.wait(agent_tasks), grace)
            await _bounded("agent connection close", self.agent.client.close(), 5)
        if self.orchestrator is not None:
            self.orchestrator.stop()
            await _bounded("orchestrator stop", self.orchestrator.wait(), 20)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=10)
            for task in pending:
                task.cancel()
        if self.orchestrator is not None:
            # close, not drain: drain can wait out its 30 s timeout on the pull subscription, and
            # whatever the recorder did not ack is redelivered to the next one (and deduplicated).
            await _bounded("orchestrator connection close", self.orchestrator.client.close(), 5)
        if self.store is not None:
            await _bounded("store close", self.store.close(), 10)
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
        if self.info is not None:
            discovery_file().unlink(missing_ok=True)


async def _bounded(step: str, operation: Awaitable[object], limit: float) -> None:
    try:
        await asyncio.wait_for(operation, limit)
    except TimeoutError:
        log.error("a step of stopping overran its time limit; going on", step=step, limit=limit)
    except Exception as exc:  # a daemon that failed: stopping goes on (its run reported it)
        log.error("a step of stopping failed; going on", step=step, error=repr(exc))


async def run_until_signalled(stack: LocalStack, started: Callable[[StackInfo], None]) -> None:
    """Run the stack in the foreground; the first SIGINT/SIGTERM stops it cleanly (the agent's
    runs get their grace period), a second one hands the agent's runs back at once."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal() -> None:
        if stopping.is_set() and stack.agent is not None:
            stack.agent.stop()  # the second time: hurry
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        started(await stack.start())
        waiter = asyncio.create_task(stack.wait())
        await asyncio.wait([waiter, asyncio.create_task(stopping.wait())],
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        await stack.stop()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await stack.stop()
