"""``flowbus up``: the local stack in the foreground."""

from __future__ import annotations

from typing import Annotated

import typer

from flowbus._stack import DEFAULT_PORT, LocalStack, StackInfo, run_until_signalled
from flowbus.agents import AgentSettings
from flowbus.agents.settings import AgentEnv, OrchestratorEnv, SchedulerEnv
from flowbus.api.settings import DEFAULT_API_PORT
from flowbus.cli.common import console, exit_when_threads_end, fail
from flowbus.cli.daemons import check_settings
from flowbus.engine.errors import FlowbusError
from flowbus.engine.loops import new_event_loop

#: The agent's concurrency under ``flowbus up``. Runs it has room for go to it at their
#: submission (no queue round trips): with 100, a burst of 200 three-task runs completes 20-30 %
#: faster than with 50, and 200 gains nothing more; its threads are made only as runs need
#: them (after such bursts the process holds 133 MB, 20 MB more than with 50: docs/benchmarks.md).
UP_CONCURRENCY = 100


def up(
    port: Annotated[
        int, typer.Option(help="NATS client port; a taken one falls back.")
    ] = DEFAULT_PORT,
    sync: Annotated[
        str, typer.Option(help="JetStream durability: 'default' or 'always' (fsync every write).")
    ] = "default",
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-c",
            help="Flow runs the agent runs at once (threads of one process: flows mostly wait "
            "on I/O, so 100 suits a laptop).",
        ),
    ] = UP_CONCURRENCY,
    isolation: Annotated[
        str, typer.Option(help="'thread': runs in the agent's process; 'process': one child each.")
    ] = "thread",
    agent: Annotated[bool, typer.Option(help="Start an agent on the default queue.")] = True,
    api_port: Annotated[
        int, typer.Option(help="HTTP API port (0: a free one); a taken one falls back.")
    ] = DEFAULT_API_PORT,
) -> None:
    """Start NATS (embedded, unless $FLOWBUS_NATS_URL is set), the orchestrator and an agent on
    the default queue; Ctrl-C stops all (a second Ctrl-C hands running flow runs back)."""
    if isolation not in ("thread", "process"):
        fail("--isolation must be 'thread' or 'process'")
    check_settings(OrchestratorEnv, SchedulerEnv, AgentEnv)
    agent_settings = (
        AgentSettings.from_env(
            queues=("default",),
            concurrency=concurrency,
            isolation=isolation,
        )
        if agent
        else None
    )

    def started(info: StackInfo) -> None:
        for note in info.notes:
            console.print(f"[yellow]note:[/] {note}")
        where = f" (nats-server pid {info.nats_pid})" if info.nats_pid else ""
        console.print(f"NATS          {info.nats_url}{where}", markup=False)
        console.print(f"store         {info.store_url}", markup=False)
        console.print(
            "orchestrator  submissions, claims, leases; events into the store", markup=False
        )
        if info.api_url:
            console.print(f"web UI        {info.api_url}/", markup=False)
            console.print(f"API           {info.api_url}/api/v1", markup=False)
            console.print(f"              OpenAPI at {info.api_url}/openapi.json", markup=False)
            if not info.api_token:
                console.print("              open (no $FLOWBUS_API_TOKEN): on 127.0.0.1 only",
                              markup=False)  # fmt: skip
        if info.agent:
            console.print(
                f"agent         {info.agent} on queue(s) {', '.join(info.queues)}, "
                f"{info.concurrency} at once",
                markup=False,
            )
        console.print("flowbus is up; Ctrl-C to stop", markup=False)

    loop = new_event_loop()
    try:
        loop.run_until_complete(
            run_until_signalled(LocalStack(port, sync, agent_settings, api_port), started)
        )
    except (FlowbusError, ValueError) as exc:
        fail(str(exc))
    finally:
        loop.close()
    console.print("flowbus is down")
    exit_when_threads_end()  # a flow run's thread that would not stop must not keep us alive
