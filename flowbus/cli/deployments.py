"""``flowbus deploy`` and ``flowbus deployments``: define deployments and look at them."""

from __future__ import annotations

import dataclasses
import enum
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flowbus.cli.common import console, fail, print_json, short_time, with_store
from flowbus.cli.schedules import build_schedules
from flowbus.engine.deployments import build_deployment, save_deployment
from flowbus.engine.entrypoints import load_flow
from flowbus.engine.errors import FlowbusError
from flowbus.engine.store import DeploymentView, EventStore

app = typer.Typer(help="Inspect deployments.", no_args_is_help=True)


class CatchUpChoice(enum.StrEnum):
    all = "all"
    latest = "latest"
    none = "none"


class CollisionChoice(enum.StrEnum):
    enqueue = "enqueue"
    cancel = "cancel"


class OverlapChoice(enum.StrEnum):
    allow = "allow"
    skip = "skip"
    cancel = "cancel"


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that reads as JSON (``3``, ``true``, ``[1,2]``) is taken as JSON."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            fail(f"--param {pair!r} is not of the form name=value")
        try:
            parsed[key] = json.loads(text)
        except ValueError:
            parsed[key] = text
    return parsed


def deploy(
    entrypoint: Annotated[str, typer.Argument(help="path/to/file.py:flow or package.module:flow")],
    name: Annotated[str, typer.Option("--name", "-n", help="The deployment's name.")],
    queue: Annotated[str, typer.Option("--queue", "-q", help="Work queue.")] = "default",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Default parameter name=value.")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="A tag.")] = None,
    description: Annotated[str | None, typer.Option(help="What it is for.")] = None,
    cron: Annotated[
        list[str] | None, typer.Option(help='A cron schedule ("0 6 * * *"); repeatable.')
    ] = None,
    interval: Annotated[
        list[float] | None, typer.Option(help="An interval schedule in seconds; repeatable.")
    ] = None,
    rrule: Annotated[
        list[str] | None, typer.Option(help="An RFC 5545 recurrence rule; repeatable.")
    ] = None,
    timezone: Annotated[
        str, typer.Option(help="IANA time zone of the schedules (Europe/Paris).")
    ] = "UTC",
    anchor: Annotated[
        str | None, typer.Option(help="Where intervals count from (ISO 8601).")
    ] = None,
    catchup: Annotated[
        CatchUpChoice, typer.Option(help="After downtime, run missed slots: all, latest, none.")
    ] = CatchUpChoice.latest,
    overlap: Annotated[
        OverlapChoice,
        typer.Option(help="A slot while the previous run runs: allow, skip, cancel (it)."),
    ] = OverlapChoice.allow,
    concurrency_limit: Annotated[
        int | None, typer.Option(min=1, help="Runs of it queued or under way at once, at most.")
    ] = None,
    collision: Annotated[
        CollisionChoice, typer.Option(help="A run over the limit: enqueue (waits) or cancel.")
    ] = CollisionChoice.enqueue,
    crash_retries: Annotated[
        int,
        typer.Option(
            min=0,
            help="How often a run whose agent or process died is queued again before it ends "
            "Crashed (apart from the flow's retries; 0: a crash is final).",
        ),
    ] = 3,
    block: Annotated[
        list[str] | None,
        typer.Option(
            "--block",
            help="A block its runs may load on an agent, TYPE/NAME ('*' matches any part); "
            "repeatable. Default: any block; --block none: no block.",
        ),
    ] = None,
    working_dir: Annotated[
        Path | None,
        typer.Option(
            "--working-dir",
            help="The folder agents run the flow from (default: this "
            "one); the flow's code must be there on their hosts.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
    apply: Annotated[
        bool, typer.Option("--apply", help="Accepted for Prefect's guide: always applied.")
    ] = False,
) -> None:
    """Record a deployment of a flow: its entrypoint, work queue, default parameters,
    schedules and concurrency limit."""
    del apply  # a deployment is recorded at once; Prefect's build needed --apply for that
    here = Path.cwd()
    schedules = build_schedules(cron or [], interval or [], rrule or [], timezone, anchor)
    try:
        flow = load_flow(entrypoint, here)
        spec = build_deployment(
            flow, name, entrypoint, here, queue, parse_params(param or []), tag,
            description, crash_retries=crash_retries,
        )  # fmt: skip
    except FlowbusError as exc:
        fail(str(exc))
    missing = sorted(set(spec.parameter_schema.get("required", [])) - set(spec.parameters))
    if schedules and missing:
        fail(
            f"a scheduled run has nobody to give it {', '.join(missing)}: "
            f"give defaults with -p {missing[0]}=... (or drop the schedule)",
            code=2,
        )
    spec = dataclasses.replace(
        spec,
        working_dir=str(working_dir) if working_dir is not None else spec.working_dir,
        schedules=schedules,
        catchup=catchup.value,
        overlap=overlap.value,
        concurrency_limit=concurrency_limit,
        collision=collision.value,
        blocks=block_patterns(block),
    )

    async def save(store: EventStore) -> DeploymentView:
        return await save_deployment(store, spec)

    saved = with_store(save)
    if as_json:
        print_json(saved.to_dict())
        return
    console.print(
        f"deployment [bold]{saved.name}[/] (version {saved.version}) on queue {saved.queue!r}: "
        f"{saved.entrypoint}"
    )
    for schedule in schedules:
        upcoming = schedule.schedule.next_occurrence(datetime.now(UTC))
        shown = short_time(upcoming.isoformat()) if upcoming else "-"
        console.print(f"  schedule {schedule.id}: {schedule.schedule}; next {shown}", markup=False)


def block_patterns(given: list[str] | None) -> list[str] | None:
    """``--block`` as the deployment records it: None (any block), [] (``none``), patterns."""
    if not given:
        return None
    if given == ["none"]:
        return []
    for pattern in given:
        if pattern.count("/") != 1 or not all(pattern.split("/")):
            fail(f"--block {pattern!r}: give TYPE/NAME, e.g. secret/api-key or 'secret/*'")
    return list(given)


@app.command("ls")
def list_deployments(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """List deployments by name."""

    async def fetch(store: EventStore) -> list[DeploymentView]:
        return await store.list_deployments()

    deployments = with_store(fetch)
    if as_json:
        print_json({"deployments": [d.to_dict() for d in deployments]})
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "QUEUE", "ENTRYPOINT", "VERSION", "UPDATED"):
        table.add_column(column, no_wrap=column in ("NAME", "UPDATED"))
    for d in deployments:
        table.add_row(d.name, d.queue, d.entrypoint, str(d.version), short_time(d.updated))
    console.print(table if deployments else "[dim]no deployments[/]")


@app.command("show")
def show_deployment(
    name: Annotated[str, typer.Argument(help="flow-name/deployment-name")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """Show one deployment, with its default parameters and their JSON schema."""

    async def fetch(store: EventStore) -> DeploymentView | None:
        return await store.get_deployment(name)

    found = with_store(fetch)
    if found is None:
        fail(f"no deployment named {name!r} (names are flow-name/deployment-name)")
    if as_json:
        print_json(found.to_dict())
        return
    console.print(f"[bold]{found.name}[/]  version {found.version}  queue {found.queue!r}")
    console.print(f"entrypoint: {found.entrypoint}  (in {found.working_dir})", markup=False)
    console.print(f"parameters: {found.parameters}", markup=False)
    console.print(f"tags: {', '.join(found.tags) or '-'}", markup=False)
    properties = found.parameter_schema.get("properties", {})
    required = set(found.parameter_schema.get("required", []))
    for key, schema in properties.items():
        mark = " (required)" if key in required else ""
        console.print(f"  {key}: {schema.get('type', 'any')}{mark}", markup=False)
