"""``flowbus schedule`` and ``flowbus backfill``: a deployment's schedules, paused and resumed,
and runs for the occurrences of a past window. ``flowbus deploy`` takes the schedule options."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from flowbus.cli.common import (
    console,
    fail,
    found_or_fail,
    listing,
    print_json,
    with_client,
    with_store,
)
from flowbus.engine.deployments import set_schedules_active
from flowbus.engine.errors import FlowbusError, UsageError
from flowbus.engine.schedules import (
    DeploymentSchedule,
    describe_all,
    occurrence_key,
    schedule_rule,
)
from flowbus.engine.store import DeploymentView, EventStore

app = typer.Typer(help="Deployment schedules.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")]
ScheduleOption = Annotated[
    int | None, typer.Option("--schedule", "-s", help="Only this schedule (its id); default all.")
]


def build_schedules(
    cron: list[str], interval: list[float], rrule: list[str], timezone: str, anchor: str | None
) -> list[DeploymentSchedule]:
    """The schedules ``flowbus deploy`` was given, numbered 1, 2, ... in option order."""
    try:
        when = datetime.fromisoformat(anchor) if anchor else None
    except ValueError as exc:
        fail(f"invalid --anchor: {exc}", code=2)
    try:
        rules = [
            *(schedule_rule(cron=c, timezone=timezone) for c in cron),
            *(schedule_rule(interval=i, anchor=when, timezone=timezone) for i in interval),
            *(schedule_rule(rrule=r, timezone=timezone) for r in rrule),
        ]
    except UsageError as exc:
        fail(str(exc), code=2)
    return [DeploymentSchedule(id=i + 1, schedule=rule) for i, rule in enumerate(rules)]


@app.command("ls")
def list_schedules(
    deployment: Annotated[str | None, typer.Argument(help="Only this deployment.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the schedules of every deployment (or one), with their next occurrence."""

    async def fetch(store: EventStore) -> list[DeploymentView]:
        if deployment is None:
            return await store.list_deployments()
        found = await store.get_deployment(deployment)
        if found is None:
            fail(f"no deployment named {deployment!r}")
        return [found]

    rows = [
        {"deployment": d.name, "catchup": d.catchup, "overlap": d.overlap, **row}
        for d in with_store(fetch)
        for row in describe_all(d)
    ]  # fmt: skip
    if as_json:
        print_json({"schedules": rows})
        return
    # Readable in 80 columns: the next slot without its year, a schedule folded at its spaces.
    narrow = console.width < 110
    table = listing("DEPLOYMENT", "ID", "SCHEDULE", "STATUS", "NEXT", "CATCH-UP", "OVERLAP",
                    whole=("DEPLOYMENT", "NEXT"))  # fmt: skip
    for row in rows:
        status = "[green]active[/]" if row["active"] else "[yellow]paused[/]"
        table.add_row(
            row["deployment"], str(row["id"]), row["summary"], status,
            _in_its_zone(row["next_slot"], row["schedule"].get("timezone"), narrow),
            row["catchup"],
            row["overlap"],
        )  # fmt: skip
    console.print(table if rows else "[dim]no schedules[/]")


def _in_its_zone(slot: str | None, zone: str | None, narrow: bool = False) -> str:
    """The next slot in the schedule's own time zone, which it names (``06:00 CET``)."""
    if slot is None:
        return "-"
    from zoneinfo import ZoneInfo

    when = datetime.fromisoformat(slot).astimezone(ZoneInfo(zone or "UTC"))
    return when.strftime("%m-%d %H:%M %Z" if narrow else "%Y-%m-%d %H:%M %Z")


def _set_active(deployment: str, schedule_id: int | None, active: bool, as_json: bool) -> None:
    async def save(store: EventStore) -> DeploymentView:
        return await set_schedules_active(store, deployment, schedule_id, active)

    try:
        saved = with_store(save)
    except FlowbusError as exc:
        fail(str(exc))
    shown = describe_all(saved)
    if as_json:
        print_json({"deployment": saved.name, "version": saved.version, "schedules": shown})
        return
    for row in shown:
        state = "active" if row["active"] else "paused"
        console.print(f"{saved.name} schedule {row['id']} ({row['summary']}): {state}")


@app.command("pause")
def pause(deployment: str, schedule: ScheduleOption = None, as_json: JsonOption = False) -> None:
    """Pause a deployment's schedules (or one): no runs are made for their occurrences, and runs
    made ahead of time for them are cancelled when their occurrence comes."""
    _set_active(deployment, schedule, False, as_json)


@app.command("resume")
def resume(deployment: str, schedule: ScheduleOption = None, as_json: JsonOption = False) -> None:
    """Resume paused schedules; the occurrences of the pause are not caught up."""
    _set_active(deployment, schedule, True, as_json)


def _moment(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r} is not an ISO 8601 date or time (2026-11-01T06:00)", code=2)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def backfill(
    deployment: Annotated[str, typer.Argument(help="flow-name/deployment-name")],
    start: Annotated[str, typer.Option(help="From (ISO 8601; UTC unless it has a zone).")],
    end: Annotated[str, typer.Option(help="Up to and including (ISO 8601).")],
    schedule: ScheduleOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a run for every occurrence of a deployment's schedules in a past window. An
    occurrence that already has a run (made by the scheduler or an earlier backfill) keeps
    it."""
    since, until = _moment(start, "--start"), _moment(end, "--end")
    if until < since:
        fail("--end is before --start", code=2)

    async def fetch(store: EventStore) -> DeploymentView | None:
        return await store.get_deployment(deployment)

    found = found_or_fail(fetch, f"no deployment named {deployment!r}", code=2)
    chosen = [DeploymentSchedule.model_validate(s) for s in found.schedules]
    chosen = [s for s in chosen if schedule in (None, s.id)]
    if not chosen:
        fail(f"{deployment} has no schedule{f' {schedule}' if schedule else 's'}", code=2)
    # The window's start is included: occurrences() lists those after its first argument.
    before = since - timedelta(microseconds=1)
    occurrences = sorted(
        (occurrence, s.id) for s in chosen for occurrence in s.schedule.occurrences(before, until)
    )
    if len(occurrences) > 10_000:
        fail(
            f"{len(occurrences)} occurrences in that window; backfill at most 10,000 at once",
            code=2,
        )

    async def submit_all(client: Any) -> list[dict[str, Any]]:
        made = []
        for occurrence, schedule_id in occurrences:
            run = await client.submit(
                found.name, idempotency_key=occurrence_key(schedule_id, occurrence),
                scheduled_time=occurrence,
                tags=["backfill"],
            )  # fmt: skip
            made.append(
                {"slot": occurrence.isoformat(), "schedule_id": schedule_id, "run_id": run.run_id,
                 "name": run.name, "created": run.created}
            )  # fmt: skip
        return made

    runs = with_client(submit_all) if occurrences else []
    if as_json:
        print_json({"deployment": found.name, "runs": runs})
        return
    created = sum(1 for r in runs if r["created"])
    console.print(
        f"{found.name}: {len(runs)} occurrences from {since.isoformat()} to {until.isoformat()}; "
        f"{created} runs queued, {len(runs) - created} already had one"
    )
