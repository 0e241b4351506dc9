"""``flowbus server start`` and ``flowbus agent start``: one daemon in the foreground.

Both find NATS at ``$FLOWBUS_NATS_URL`` (with ``$FLOWBUS_NATS_*`` credentials), else where a
running ``flowbus up`` listens. The first SIGINT/SIGTERM stops them cleanly; a second one makes
an agent hand its runs back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import typer

from flowbus.agents import Agent, AgentSettings, Orchestrator
from flowbus.agents.lifecycle import settle_heap
from flowbus.agents.scheduler import Scheduler
from flowbus.agents.settings import (
    AgentEnv,
    OrchestratorEnv,
    SchedulerEnv,
    SettingsError,
    check_environment,
)
from flowbus.api.settings import DEFAULT_API_PORT
from flowbus.broker import connect, nats_url
from flowbus.cli.common import console, exit_when_threads_end, fail
from flowbus.engine.errors import FlowbusError
from flowbus.engine.loops import new_event_loop
from flowbus.engine.store import store_from_url

server_app = typer.Typer(help="The orchestrator.", no_args_is_help=True)
agent_app = typer.Typer(help="Start an agent: a daemon that pulls and runs flow runs.",
                        no_args_is_help=True)  # fmt: skip
scheduler_app = typer.Typer(
    help="The scheduler (the orchestrator runs one; more are safe).", no_args_is_help=True
)


def _on_signals(action: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, action)


def check_settings(*models: type[Any]) -> None:
    """Validate the daemon's FLOWBUS_* settings before anything starts (exit 2 when bad)."""
    try:
        check_environment(*models)
    except SettingsError as exc:
        fail(str(exc), code=2)


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    loop = new_event_loop()
    try:
        loop.run_until_complete(main())
    except (FlowbusError, ValueError) as exc:
        fail(str(exc))
    finally:
        loop.close()
    exit_when_threads_end()


@server_app.command("start")
def server_start(
    api_port: Annotated[
        int, typer.Option(help="HTTP API port (0: a free one; -1: no API).")
    ] = DEFAULT_API_PORT,
    api_host: Annotated[
        str, typer.Option(help="HTTP API address; another than 127.0.0.1 needs a token.")
    ] = "127.0.0.1",
) -> None:
    """Run the orchestrator (submissions, claims and leases, cancels, the recorder) and the
    HTTP API."""
    check_settings(OrchestratorEnv, SchedulerEnv)

    async def main() -> None:
        from flowbus.api.server import ApiServer

        url = nats_url()
        client = await connect(url, name="flowbus-orchestrator")
        store = store_from_url()
        await store.open()
        orchestrator = Orchestrator(client, store)
        api: ApiServer | None = None
        api_store = store_from_url() if api_port >= 0 else None
        _on_signals(orchestrator.stop)
        try:
            await orchestrator.start()
            if api_store is not None:
                await api_store.open()
                api = ApiServer(api_store, url, host=api_host, port=api_port)
                await api.start()
                console.print(f"API at {api.url}/api/v1", markup=False)
            settle_heap()
            console.print(f"orchestrator is serving on {url}; store {store.url}", markup=False)
            await orchestrator.wait()
        finally:
            if api is not None:
                await api.stop()
            if api_store is not None:
                await api_store.close()
            orchestrator.stop()
            with contextlib.suppress(Exception):  # a failure was raised by the wait above
                await orchestrator.wait()
            await client.close()
            await store.close()
        console.print("orchestrator stopped", markup=False)

    _run(main)


@agent_app.command("start")
def agent_start(
    queue: Annotated[
        list[str] | None, typer.Option("--queue", "-q", help="A work queue (repeatable).")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Flow runs at once.", min=1)
    ] = 10,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Default: host-pid.")] = None,
    isolation: Annotated[
        str, typer.Option(help="'thread': runs in this process; 'process': one child each.")
    ] = "thread",
    grace: Annotated[
        float | None,
        typer.Option(help="Seconds runs may finish after SIGTERM before they are handed back."),
    ] = None,
) -> None:
    """Run an agent: take run requests from work queues and run the flows."""
    if isolation not in ("thread", "process"):
        fail("--isolation must be 'thread' or 'process'")
    check_settings(AgentEnv)
    try:
        settings = AgentSettings.from_env(
            queues=tuple(queue or ["default"]),
            concurrency=concurrency,
            name=name,
            isolation=isolation,
            grace_seconds=grace,
        )
    except FlowbusError as exc:
        fail(str(exc))

    async def main() -> None:
        url = nats_url()
        client = await connect(url, name=f"flowbus-agent-{settings.name}")
        agent = Agent(client, settings, url)
        _on_signals(agent.stop)
        try:
            await agent.start()
            settle_heap()
            console.print(
                f"agent {settings.name} is serving {', '.join(settings.queues)} on {url} "
                f"({settings.concurrency} at once, isolation {settings.isolation})",
                markup=False,
            )
            await agent.wait()
        finally:
            await client.close()
        console.print(f"agent {settings.name} stopped", markup=False)

    _run(main)


@scheduler_app.command("start")
def scheduler_start() -> None:
    """Run a scheduler alone: it makes the runs of deployment schedules ahead of time through
    the orchestrator. Any number may run (each slot's run is made once); the orchestrator runs
    one itself unless FLOWBUS_SCHEDULER=off."""
    check_settings(SchedulerEnv)

    async def main() -> None:
        url = nats_url()
        client = await connect(url, name="flowbus-scheduler")
        store = store_from_url()
        await store.open()
        scheduler = Scheduler(client, store)
        _on_signals(scheduler.stop)
        try:
            console.print(f"scheduler is serving on {url}; store {store.url}", markup=False)
            await scheduler.run()
        finally:
            await client.close()
            await store.close()
        console.print("scheduler stopped", markup=False)

    _run(main)
