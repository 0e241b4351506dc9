"""``flowbus audit``: who caused what, newest first (docs/cli.md)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from flowbus.cli.common import console, fail, print_json, short_time, with_store
from flowbus.engine.audit import since_time
from flowbus.engine.errors import UsageError
from flowbus.engine.store import AuditView, EventStore


def audit(
    actor: Annotated[str | None, typer.Option(help="Only what this token or user caused.")] = None,
    since: Annotated[
        str | None, typer.Option(help="How far back: 1d, 12h, 2w, or an ISO 8601 time.")
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="Only what acted on this run id, queue or name.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """The audit trail: submits, cancels, resumes, retries, deploys, block, variable, limit,
    automation and queue changes, tokens, blocks handed to agents; who did each, and when."""
    try:
        after = since_time(since)
    except UsageError as exc:
        fail(str(exc), code=2)

    async def read(store: EventStore) -> list[AuditView]:
        return await store.list_audit(actor=actor, since=after, limit=limit, subject=subject)

    entries = with_store(read)
    if as_json:
        print_json({"entries": [e.to_dict() for e in entries]})
        return
    table = Table(box=None, header_style="bold")
    for column in ("WHEN", "ACTOR", "ACTION", "SUBJECT"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(short_time(e.occurred), e.actor, e.action, e.subject)
    console.print(table)
