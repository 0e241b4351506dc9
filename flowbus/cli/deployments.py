"""``flowbus deploy`` and ``flowbus deployments``: define deployments and look at them."""

from __future__ import annotations

import dataclasses
import enum
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from flowbus.cli.common import (
    console,
    err_console,
    fail,
    found_or_fail,
    listed_time,
    listing,
    print_json,
    short_time,
    with_store,
)
from flowbus.cli.deploy_file import (
    DeploymentEntry,
    chosen,
    find_deploy_file,
    notes,
    parse_deploy_file,
    working_directory,
)
from flowbus.cli.deployment_extras import checked_triggers, set_retention, set_triggers
from flowbus.cli.redeploy import Given, Settled, settle
from flowbus.cli.schedules import build_schedules
from flowbus.engine.deployments import build_deployment, enforcing, save_deployment
from flowbus.engine.entrypoints import load_flow
from flowbus.engine.errors import FlowbusError, UsageError
from flowbus.engine.schedules import DeploymentSchedule, schedule_rule
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
    entrypoint: Annotated[
        str | None,
        typer.Argument(
            help="path/to/file.py:flow or package.module:flow; none: the deployments of "
            "prefect.yaml (or flowbus.yaml) in this folder"
        ),
    ] = None,
    name: Annotated[
        list[str] | None,
        typer.Option(
            "--name", "-n", help="The deployment's name (with a deployment file: which ones)."
        ),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every deployment of the deployment file.")
    ] = False,
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
        CatchUpChoice | None,
        typer.Option(help="After downtime, run missed slots: all, latest (default), none."),
    ] = None,
    overlap: Annotated[
        OverlapChoice | None,
        typer.Option(help="A slot while the previous run runs: allow (default), skip, cancel."),
    ] = None,
    clear_schedules: Annotated[
        bool,
        typer.Option(help="Remove its schedules (a redeploy keeps those it does not replace)."),
    ] = False,
    concurrency_limit: Annotated[
        int | None,
        typer.Option(min=0, help="Runs of it queued or under way at once, at most (0: none)."),
    ] = None,
    collision: Annotated[
        CollisionChoice | None,
        typer.Option(help="A run over the limit: enqueue (waits, default) or cancel."),
    ] = None,
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
    retention_days: Annotated[
        str | None,
        typer.Option(
            help="Prune its finished runs this many days after they end ('forever': "
            "keep them; default: FLOWBUS_RETENTION_DAYS)."
        ),
    ] = None,
    keep_failed_days: Annotated[
        float | None, typer.Option(help="Keep its failed and crashed runs this long instead.")
    ] = None,
    archive: Annotated[
        str | None,
        typer.Option(
            help="Write its pruned runs to this folder or fsspec URL first (default: "
            "FLOWBUS_RETENTION_ARCHIVE)."
        ),
    ] = None,
    enforce_parameter_schema: Annotated[
        bool,
        typer.Option(
            help="Check a submission's parameters against the flow's signature when it is "
            "made (no: the flow checks them when it runs)."
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
    apply: Annotated[
        bool, typer.Option("--apply", help="Accepted for Prefect's guide: always applied.")
    ] = False,
) -> None:
    """Record a deployment of a flow: its entrypoint, work queue, default parameters,
    schedules and concurrency limit. With no entrypoint, record the deployments that
    prefect.yaml (or flowbus.yaml) in this folder declares (``--name`` or ``--all`` picks)."""
    del apply  # a deployment is recorded at once; Prefect's build needed --apply for that
    if entrypoint is None:
        deploy_from_file(Path.cwd(), name or [], every, as_json)
        return
    if not name or len(name) != 1:
        fail("give the deployment one name: flowbus deploy ENTRYPOINT --name NAME", code=2)
    schedules = build_schedules(cron or [], interval or [], rrule or [], timezone, anchor)
    given = Given(
        schedules=schedules if schedules or clear_schedules else None,
        catchup=catchup.value if catchup else None,
        overlap=overlap.value if overlap else None,
        concurrency_limit=concurrency_limit,
        collision=collision.value if collision else None,
    )
    saved = record(entrypoint, name[0], Path.cwd(), queue, parse_params(param or []), tag or [],
                   description, given, crash_retries, block_patterns(block), working_dir,
                   as_json, enforce_parameter_schema)  # fmt: skip
    if retention_days is not None or keep_failed_days is not None or archive is not None:
        set_retention(saved.name, retention_days, keep_failed_days, as_json, archive)
    if as_json:
        print_json(saved.to_dict())


def record(
    entrypoint: str,
    name: str,
    here: Path,
    queue: str,
    parameters: dict[str, Any],
    tags: list[str],
    description: str | None,
    given: Given,
    crash_retries: int,
    blocks: list[str] | None,
    working_dir: Path | None,
    quiet: bool,
    enforce: bool = True,
) -> DeploymentView:
    """Check and save one deployment; say what was saved unless ``quiet``."""
    try:
        flow = load_flow(entrypoint, here)
        spec = build_deployment(
            flow, name, entrypoint, here, queue, parameters, tags,
            description, crash_retries=crash_retries,
        )  # fmt: skip
    except FlowbusError as exc:
        fail(str(exc))
    base = dataclasses.replace(
        spec, working_dir=str(working_dir) if working_dir is not None else spec.working_dir,
        blocks=blocks,
    )  # fmt: skip
    missing = sorted(set(spec.parameter_schema.get("required", [])) - set(spec.parameters))

    async def save(store: EventStore) -> tuple[DeploymentView, Settled]:
        # One session: the version before (what a redeploy keeps) is read where it is saved.
        settled = settle(await store.get_deployment(spec.name), given)
        if settled.schedules and missing:
            fail(
                f"a scheduled run has nobody to give it {', '.join(missing)}: "
                f"give defaults with -p {missing[0]}=... (or drop the schedule)",
                code=2,
            )
        final = dataclasses.replace(
            base, schedules=settled.schedules, catchup=settled.catchup, overlap=settled.overlap,
            concurrency_limit=settled.concurrency_limit, collision=settled.collision,
        )  # fmt: skip
        return await save_deployment(store, enforcing(final, enforce)), settled

    saved, settled = with_store(save)
    schedules = settled.schedules
    if not quiet:
        say(saved, schedules)
        if settled.kept:
            console.print(f"  kept from version {saved.version - 1}: {', '.join(settled.kept)} "
                          "(--clear-schedules, --concurrency-limit 0 remove them)",
                          markup=False)  # fmt: skip
    return saved


def say(saved: DeploymentView, schedules: list[DeploymentSchedule]) -> None:
    """What was saved, for people."""
    console.print(
        f"deployment [bold]{saved.name}[/] (version {saved.version}) on queue {saved.queue!r}: "
        f"{saved.entrypoint}"
    )
    for schedule in schedules:
        upcoming = schedule.schedule.next_occurrence(datetime.now(UTC))
        shown = short_time(upcoming.isoformat()) if upcoming else "-"
        console.print(f"  schedule {schedule.id}: {schedule.schedule}; next {shown}", markup=False)


def deploy_from_file(folder: Path, names: list[str], every: bool, as_json: bool) -> None:
    """The deployments of the folder's prefect.yaml (or flowbus.yaml), one after another."""
    path = find_deploy_file(folder)
    if path is None:
        fail("no entrypoint given and no prefect.yaml or flowbus.yaml here: "
             "flowbus deploy path/to/file.py:flow --name NAME", code=2)  # fmt: skip
    try:
        found = parse_deploy_file(path.read_text(), path.name)
        entries = chosen(found, names, every, path.name)
    except FlowbusError as exc:
        fail(str(exc), code=2)
    triggers = checked_triggers(entries, path.name)
    saved: list[DeploymentView] = []
    changed = False
    for entry in entries:
        assert entry.entrypoint is not None
        for note in notes(entry, found, folder):
            err_console.print(f"{entry.name}: {note}", markup=False)
        try:
            here = working_directory(entry, found, folder) or folder
        except FlowbusError as exc:
            fail(f"{path.name}: deployment {entry.name!r}: {exc}", code=2)
        limit, collision = entry.limit
        # A file declares each deployment whole: what it leaves out, the deployment has not.
        declared = Given(file_schedules(entry), "latest", "allow", limit or 0, collision)
        saved.append(record(entry.entrypoint, entry.name, here, entry.queue, entry.parameters,
                            entry.tags, entry.description, declared, 3, None, None, as_json,
                            entry.enforce_parameter_schema))  # fmt: skip
        changed = set_triggers(saved[-1].name, triggers[entry.name], as_json) or changed
    if changed:  # a running automation engine reads them now, not within a second
        from flowbus.cli.automations import announce_change

        announce_change()
    if as_json:
        print_json({"deployments": [view.to_dict() for view in saved]})


def file_schedules(entry: DeploymentEntry) -> list[DeploymentSchedule]:
    """A file's schedules as a deployment's, numbered 1, 2, ... in the file's order."""
    made: list[DeploymentSchedule] = []
    for number, given in enumerate(entry.all_schedules, start=1):
        try:
            anchor = datetime.fromisoformat(given.anchor_date) if given.anchor_date else None
            rule = schedule_rule(given.cron, given.interval, given.rrule,
                                 given.timezone or "UTC", anchor)  # fmt: skip
        except (UsageError, ValueError) as exc:
            fail(f"{entry.name}: schedule {number}: {exc}", code=2)
        made.append(DeploymentSchedule(id=number, schedule=rule, active=given.active))
    return made


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
    table = listing("NAME", "QUEUE", "ENTRYPOINT", "VERSION", "UPDATED", whole=("NAME", "UPDATED"))
    for d in deployments:
        table.add_row(d.name, d.queue, d.entrypoint, str(d.version), listed_time(d.updated))
    console.print(table if deployments else "[dim]no deployments[/]")


@app.command("show")
def show_deployment(
    name: Annotated[str, typer.Argument(help="flow-name/deployment-name")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """Show one deployment, with its default parameters and their JSON schema."""

    async def fetch(store: EventStore) -> DeploymentView | None:
        return await store.get_deployment(name)

    found = found_or_fail(
        fetch, f"no deployment named {name!r} (names are flow-name/deployment-name)"
    )
    if as_json:
        print_json(found.to_dict())
        return
    console.print(f"[bold]{found.name}[/]  version {found.version}  queue {found.queue!r}")
    console.print(f"entrypoint: {found.entrypoint}  (in {found.working_dir})", markup=False)
    console.print(f"parameters: {found.parameters}", markup=False)
    console.print(f"tags: {', '.join(found.tags) or '-'}", markup=False)
    if found.concurrency_limit is not None:
        console.print(f"concurrency limit: {found.concurrency_limit} ({found.collision} over it)",
                      markup=False)  # fmt: skip
    properties = found.parameter_schema.get("properties", {})
    required = set(found.parameter_schema.get("required", []))
    for key, schema in properties.items():
        # Required by the flow, but a run is given the deployment's default when it has one.
        if key in found.parameters:
            mark = f" (default {found.parameters[key]!r})"
        else:
            mark = " (required)" if key in required else ""
        console.print(f"  {key}: {schema.get('type', 'any')}{mark}", markup=False)
