"""``flowbus queues`` and ``flowbus agents``: work queues and the agents serving them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from flowbus.broker.protocol import AgentInfo, QueueInfo
from flowbus.cli.common import console, listed_time, listing, print_json, with_client
from flowbus.client import Client

queues_app = typer.Typer(
    help="Work queues: settings, depth, pause and resume.", no_args_is_help=True
)
agents_app = typer.Typer(help="The agents online, the runs each holds, their last heartbeat.",
                         no_args_is_help=True)  # fmt: skip

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")]


def _queue_table(queues: list[QueueInfo]) -> Table:
    columns = ("QUEUE", "PRIORITY", "LIMIT", "PAUSED", "WAITING", "IN FLIGHT")
    table = listing(*columns, whole=("QUEUE",))
    for info in queues:
        s = info.settings
        table.add_row(
            s.name,
            str(s.priority),
            str(s.concurrency_limit or "-"),
            "[yellow]paused[/]" if s.paused else "no",
            str(info.waiting),
            str(info.in_flight),
        )
    return table


@queues_app.command("ls")
def queues_ls(as_json: JsonOption = False) -> None:
    """List work queues with their settings, waiting requests and runs in flight."""

    async def main(client: Client) -> list[QueueInfo]:
        return await client.queues()

    queues = with_client(main)
    if as_json:
        print_json([q.model_dump(mode="json") for q in queues])
    else:
        console.print(_queue_table(queues))


def _update(name: str, as_json: bool, **changes: object) -> None:
    async def main(client: Client) -> QueueInfo:
        return await client.update_queue(name, **changes)

    info = with_client(main)
    if as_json:
        print_json(info.model_dump(mode="json"))
    else:
        console.print(_queue_table([info]))


@queues_app.command("pause")
def queues_pause(name: str, as_json: JsonOption = False) -> None:
    """Stop agents from taking runs of a queue (runs in flight go on)."""
    _update(name, as_json, paused=True)


@queues_app.command("resume")
def queues_resume(name: str, as_json: JsonOption = False) -> None:
    """Let agents take runs of a paused queue again."""
    _update(name, as_json, paused=False)


@queues_app.command("set")
def queues_set(
    name: str,
    priority: Annotated[int | None, typer.Option(help="Higher is taken first.")] = None,
    limit: Annotated[
        int | None, typer.Option(help="Runs in flight across all agents; 0 for no limit.", min=0)
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Set a queue's priority or concurrency limit (the queue is created if new)."""
    _update(name, as_json, priority=priority, concurrency_limit=limit)


@agents_app.command("ls")
def agents_ls(as_json: JsonOption = False) -> None:
    """List agents with their last heartbeat and the runs they hold."""

    async def main(client: Client) -> list[AgentInfo]:
        return await client.agents()

    agents = with_client(main)
    if as_json:
        print_json([a.model_dump(mode="json") for a in agents])
        return
    table = listing("AGENT", "ALIVE", "QUEUES", "RUNS", "ABANDONED", "LAST HEARTBEAT", "HOST",
                    "PID", whole=("AGENT", "LAST HEARTBEAT"))  # fmt: skip
    for agent in agents:
        table.add_row(
            agent.name,
            "[green]yes[/]" if agent.alive else "[red]no[/]",
            ", ".join(agent.queues),
            f"{len(agent.runs)}/{agent.concurrency}",
            str(len(agent.abandoned)) if agent.abandoned else "",
            listed_time(agent.last_heartbeat),
            agent.hostname,
            str(agent.pid),
        )
    console.print(table)
