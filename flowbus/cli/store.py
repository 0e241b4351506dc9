"""``flowbus store``: rebuild the projections from the event log, verify them, back the store
up and restore it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from flowbus.cli.common import console, err_console, fail, print_json, with_store
from flowbus.engine.errors import FlowbusError
from flowbus.engine.store import EventStore

app = typer.Typer(help="Maintain the event store.", no_args_is_help=True)


@app.command("rebuild")
def rebuild() -> None:
    """Re-derive every projection (flow runs, task runs, logs) from the event log."""

    async def action(store: EventStore) -> int:
        return await store.rebuild_projections()

    count = with_store(action)
    console.print(f"rebuilt projections from {count} events")


@app.command("verify")
def verify() -> None:
    """Rebuild the projections aside and compare them with the live ones; exit 1 if they differ."""

    async def action(store: EventStore) -> list[str]:
        return await store.verify_projections()

    differences = with_store(action)
    if differences:
        for line in differences:
            console.print(line, markup=False)
        fail(f"projections differ from the event log ({len(differences)} differences shown)")
    console.print("projections match the event log")


@app.command("backup")
def backup_store(
    path: Annotated[Path, typer.Argument(help="A new file for the copy.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """Copy the store to PATH, consistent, while orchestrators write to it (SQLite: its online
    backup; PostgreSQL: pg_dump of its schema)."""
    from flowbus.engine.settings import store_url
    from flowbus.engine.store.backup import backup

    try:
        made = backup(store_url(), path)
    except FlowbusError as exc:
        fail(str(exc), code=2)
    if as_json:
        print_json({"path": str(made.path), "taken_at": made.taken_at, "bytes": made.bytes})
        return
    console.print(f"backed up to {made.path} ({made.bytes:,} bytes), as of {made.taken_at}",
                  markup=False)  # fmt: skip


@app.command("restore")
def restore_store(
    path: Annotated[Path, typer.Argument(help="A file flowbus store backup made.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
) -> None:
    """Replace the store with a backup (stop the orchestrators first). The next leader
    records again the events published since the backup was taken."""
    from flowbus.engine.settings import store_url
    from flowbus.engine.store.backup import restore, store_name

    try:
        target = store_name(store_url())
    except FlowbusError as exc:
        fail(str(exc), code=2)
    if not yes and not typer.confirm(f"replace the store {target} with {path}?"):
        fail("nothing restored", code=1)
    try:
        done = restore(path, store_url())
    except FlowbusError as exc:
        fail(str(exc), code=2)
    console.print(f"restored {target} from {path} (taken {done['taken_at']}); the next leading "
                  f"orchestrator records the events stream again from {done['since']}",
                  markup=False)  # fmt: skip


@app.command("prune")
def prune_store(
    older_than: Annotated[
        str | None,
        typer.Option(help="Finished runs that ended longer ago (30d); default: the policies."),
    ] = None,
    keep_failed: Annotated[
        str | None, typer.Option(help="Keep failed and crashed runs this long instead (90d).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go.")] = False,
    batch: Annotated[int, typer.Option(help="Runs removed per transaction.")] = 500,
    archive: Annotated[
        str | None,
        typer.Option(
            help=(
                "Write the runs' events here first (a folder or fsspec URL; default "
                "FLOWBUS_RETENTION_ARCHIVE): URL/<day>/<batch>.jsonl.gz."
            )
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """Remove finished runs past their retention, whole (events, task runs, logs), in
    batches: --older-than for every run, else the policies the leader applies (a deployment's
    own, over FLOWBUS_RETENTION_DAYS); unfinished runs and each key's latest artifact's run are
    kept."""
    from flowbus.agents.retention_keeper import default_archive, default_policy
    from flowbus.engine.clock import parse_duration
    from flowbus.engine.retention import (
        PruneReport,
        RetentionPolicy,
        configured_policies,
        prune,
    )

    try:
        given = default_policy()
        if older_than is not None:
            failed = parse_duration(keep_failed) if keep_failed else None
            given = RetentionPolicy(parse_duration(older_than), failed)
        elif keep_failed is not None:
            fail("--keep-failed goes with --older-than", code=2)
    except FlowbusError as exc:
        fail(str(exc), code=2)

    async def action(store: EventStore) -> PruneReport:
        policies = await configured_policies(store, given)
        if older_than is not None:  # the age given is for every run
            policies = dataclasses.replace(policies, by_deployment={})
        into = archive or default_archive()
        return await prune(store, policies, dry_run=dry_run, batch=batch, archive=into)

    report = with_store(action)
    if as_json:
        print_json(report.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    console.print(f"{verb} {report.runs} runs of {report.examined} examined; kept "
                  f"{report.kept_pinned} that an artifact points at", markup=False)  # fmt: skip
    for run_id in report.sample if dry_run else []:
        console.print(f"  {run_id}", markup=False)
    if report.result_folders:
        console.print(f"removed the result files of {report.result_folders} of them", markup=False)
    for left in report.files_left:
        err_console.print(f"could not remove {left}", markup=False)


@app.command("import")
def import_runs(
    archive: Annotated[str, typer.Argument(help="An archive file or folder (or fsspec URL).")],
    keep_days: Annotated[
        float, typer.Option(help="Hold the runs from retention this many days.")
    ] = 7.0,
) -> None:
    """Put archived runs back (``flowbus store prune --archive``), for a post-mortem; an event
    the store holds is not added twice. Retention leaves them for ``--keep-days``."""
    from flowbus.engine.archive import import_archive

    async def action(store: EventStore) -> tuple[int, int]:
        return await import_archive(store, archive, keep_days)

    if not 0 < keep_days < 36_600:
        fail(f"--keep-days must be above 0 (and below 100 years), not {keep_days:g}", code=2)
    files, events = with_store(action)
    console.print(f"imported {events} events from {files} archive files; retention leaves "
                  f"their runs for {keep_days:g} days", markup=False)  # fmt: skip
