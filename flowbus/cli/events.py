"""``flowbus events``: the live event feed (every state change, task run and log line)."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Annotated

import orjson
import typer

from flowbus.cli.common import console, fail, short_time, with_client
from flowbus.client import Client
from flowbus.engine.events import Event


def describe(event: Event) -> str:
    """One readable line for an event."""
    data = event.model_dump(mode="json")
    state = data.get("state")
    what = f"{state['name']}" if state else data.get("message") or data.get("name") or ""
    return f"{short_time(data['occurred'])}  {event.type:<17} {str(event.stream_id)[:13]}  {what}"


def events(
    run: Annotated[
        str | None, typer.Option("--run", "-r", help="One run's events, from its first.")
    ] = None,
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", "-t", help="Only events of this type (repeatable)."),
    ] = None,
    since: Annotated[
        datetime | None, typer.Option(help="From this time (ISO 8601) instead of from now.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Stop after this many events.", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One event's JSON per line.")] = False,
) -> None:
    """Follow events live (Ctrl-C to stop): a run's from its start, or everything from now."""
    if since is not None and since.tzinfo is None:
        fail("--since needs a time zone, e.g. 2026-11-24T06:00:00+00:00")

    async def main(client: Client) -> None:
        shown = 0
        stream = client.events(run_id=run, types=event_type, since=since)
        async with contextlib.aclosing(stream) as feed:
            async for event in feed:
                if as_json:
                    typer.echo(orjson.dumps(event.model_dump(mode="json")).decode())
                else:
                    console.print(describe(event), markup=False)
                shown += 1
                if limit is not None and shown >= limit:
                    return

    with contextlib.suppress(KeyboardInterrupt):
        with_client(main)
