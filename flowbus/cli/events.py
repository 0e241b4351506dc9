"""``flowbus events``: the live event feed (every state change, task run and log line)."""

from __future__ import annotations

import contextlib
from datetime import datetime
from functools import partial
from typing import Annotated

import orjson
import typer
from pydantic import ValidationError

from flowbus.broker.protocol import CustomEvent
from flowbus.cli.common import console, fail, resolve_run, short_time, with_client, with_store
from flowbus.client import Client
from flowbus.engine.clock import canonical
from flowbus.engine.events import (
    DeploymentSaved,
    Event,
    FlowRunCreated,
    FlowRunStateChanged,
    LogEmitted,
    TaskRunCreated,
    TaskRunStateChanged,
)
from flowbus.engine.store import EventStore


def describe(event: Event) -> str:
    """One readable line for an event."""
    what = ""
    if isinstance(
        event, FlowRunCreated | FlowRunStateChanged | TaskRunCreated | TaskRunStateChanged
    ):
        what = event.state.name
    elif isinstance(event, LogEmitted):
        what = event.message
    elif isinstance(event, DeploymentSaved):
        what = event.name
    when = short_time(canonical(event.occurred))
    return f"{when}  {event.type:<17} {str(event.stream_id)[:13]}  {what}"


app = typer.Typer(
    help="Follow events live, or emit one of your own (flowbus events emit TYPE).",
    invoke_without_command=True,
)


@app.callback()
def events(
    ctx: typer.Context,
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
    if ctx.invoked_subcommand is not None:
        return
    if since is not None and since.tzinfo is None:
        fail("--since needs a time zone, e.g. 2026-11-24T06:00:00+00:00")
    if run is not None:  # a prefix, as other commands take it (an unknown run is an error)
        run = with_store(partial(_run_id, run_ref=run))

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


async def _run_id(store: EventStore, run_ref: str) -> str:
    return (await resolve_run(store, run_ref)).id


@app.command("emit")
def emit(
    event_type: Annotated[str, typer.Argument(help="Dotted name: file.uploaded")],
    resource: Annotated[str | None, typer.Option(help="What it is about (a URL, an id).")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="key=value (repeatable).")
    ] = None,
    payload: Annotated[str | None, typer.Option(help="A JSON object.")] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="Its id (the same id twice is one event).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the event as JSON.")] = False,
) -> None:
    """Publish an event of your own for automations to react to."""
    labels = {}
    for pair in label or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--label {pair!r} is not key=value", code=2)
        labels[key] = value
    try:
        body = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError as exc:
        fail(f"--payload is not JSON: {exc}", code=2)
    if not isinstance(body, dict):
        fail("--payload must be a JSON object", code=2)

    async def main(client: Client) -> CustomEvent:
        return await client.emit(event_type, resource, labels, body, event_id)

    try:
        event = with_client(main)
    except ValidationError as exc:
        fail(f"invalid event: {'; '.join(e['msg'] for e in exc.errors())}", code=2)
    if as_json:
        typer.echo(event.dump().decode())
        return
    console.print(f"emitted {event.type} {event.id}", markup=False)
