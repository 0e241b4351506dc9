"""``flowbus up``: the local stack in the foreground."""

from __future__ import annotations

from typing import Annotated

import typer

from flowbus.cli.common import console, fail
from flowbus.engine.errors import FlowbusError
from flowbus.engine.loops import new_event_loop
from flowbus.stack import DEFAULT_PORT, LocalStack, StackInfo, run_until_signalled


def up(
    port: Annotated[
        int, typer.Option(help="NATS client port; a taken one falls back.")
    ] = DEFAULT_PORT,
    sync: Annotated[
        str, typer.Option(help="JetStream durability: 'default' or 'always' (fsync every write).")
    ] = "default",
) -> None:
    """Start NATS (embedded, unless $FLOWBUS_NATS_URL is set) and the recorder; Ctrl-C stops all."""

    def started(info: StackInfo) -> None:
        for note in info.notes:
            console.print(f"[yellow]note:[/] {note}")
        where = f" (nats-server pid {info.nats_pid})" if info.nats_pid else ""
        console.print(f"NATS      {info.nats_url}{where}", markup=False)
        console.print(f"store     {info.store_url}", markup=False)
        console.print("recorder  consuming flowbus.event.> into the store", markup=False)
        console.print(
            "not yet   the orchestrator and agents (deployments and work queues are coming)",
            markup=False,
        )
        console.print("flowbus is up; Ctrl-C to stop", markup=False)

    loop = new_event_loop()
    try:
        loop.run_until_complete(run_until_signalled(LocalStack(port, sync), started))
    except (FlowbusError, ValueError) as exc:
        fail(str(exc))
    finally:
        loop.close()
    console.print("flowbus is down")
