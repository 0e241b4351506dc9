"""``flowbus limit``: tag concurrency limits, held across every agent."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from rich.table import Table

from flowbus.cli.common import console, fail, print_json, with_client, with_store
from flowbus.engine.documents import delete_document, save_document
from flowbus.engine.slot_table import LIMIT
from flowbus.engine.store import EventStore

app = typer.Typer(help="Tag concurrency limits (task runs with the tag share N slots).",
                  no_args_is_help=True)  # fmt: skip
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")]
_TAG = re.compile(r"[^\s]{1,200}")


@app.command("set")
def limit_set(
    tag: str,
    limit: Annotated[int, typer.Argument(min=0, help="Slots (0 holds every such task run).")],
    as_json: JsonOption = False,
) -> None:
    """Let at most LIMIT task runs carrying TAG run at once, across all agents."""
    if not _TAG.fullmatch(tag):
        fail(f"tag {tag!r} must be 1-200 characters without spaces", code=2)

    async def save(store: EventStore) -> Any:
        return await save_document(store, LIMIT, tag, {"limit": limit})

    saved = with_store(save)
    if as_json:
        print_json({"tag": tag, "limit": limit, "version": saved.version})
        return
    console.print(f"tag {tag}: at most {limit} task runs at once", markup=False)


@app.command("rm")
def limit_rm(tag: str) -> None:
    """Remove a tag's limit (its waiting task runs are let go within a second)."""

    async def remove(store: EventStore) -> bool:
        return await delete_document(store, LIMIT, tag)

    if not with_store(remove):
        fail(f"no limit on tag {tag!r}")
    console.print(f"tag {tag}: no limit", markup=False)


@app.command("ls")
def limit_ls(as_json: JsonOption = False) -> None:
    """List limits with the slots held (by which task runs) and waited for, live."""

    async def main(client: Any) -> list[Any]:
        return list(await client.limits())

    limits = with_client(main)
    if as_json:
        print_json({"limits": [limit.model_dump(mode="json") for limit in limits]})
        return
    table = Table(box=None, header_style="bold")
    for column in ("TAG", "LIMIT", "ACTIVE", "WAITING"):
        table.add_column(column)
    for limit in limits:
        table.add_row(limit.tag, str(limit.limit), str(limit.active), str(limit.waiting))
    console.print(table if limits else "[dim]no limits[/]")
