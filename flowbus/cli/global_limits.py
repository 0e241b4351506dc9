"""``flowbus gcl``: global concurrency limits and rate limits (Prefect's ``prefect gcl``), used
by ``flowbus.concurrency``'s ``concurrency()`` and ``rate_limit()``."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from rich.table import Table

from flowbus.cli.common import console, fail, found_or_fail, print_json, with_store
from flowbus.engine.documents import delete_document, save_document
from flowbus.engine.slot_table import GLOBAL_LIMIT
from flowbus.engine.store import EventStore

app = typer.Typer(help="Global concurrency limits and rate limits.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")]
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}")


def _shown(name: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "limit": body["limit"], "active": body.get("active", True),
            "slot_decay_per_second": body.get("slot_decay_per_second") or 0.0}  # fmt: skip


def _save(name: str, body: dict[str, Any], as_json: bool) -> None:
    async def save(store: EventStore) -> Any:
        return await save_document(store, GLOBAL_LIMIT, name, body)

    with_store(save)
    shown = _shown(name, body)
    if as_json:
        print_json(shown)
        return
    decay = f", {shown['slot_decay_per_second']:g} slots a second decay" if body.get(
        "slot_decay_per_second") else ""  # fmt: skip
    state = "" if shown["active"] else " (inactive)"
    console.print(f"limit {name}: {body['limit']} slots{decay}{state}", markup=False)


def _read(name: str) -> dict[str, Any]:
    async def read(store: EventStore) -> Any:
        return await store.get_document(GLOBAL_LIMIT, name)

    found = found_or_fail(read, f"no global concurrency limit named {name!r}")
    return dict(found.body)


@app.command("create")
def create(
    name: str,
    limit: Annotated[int, typer.Option("--limit", "-l", min=0, help="Slots at once.")],
    slot_decay_per_second: Annotated[
        float, typer.Option(min=0, help="Slots freed a second (a rate limit); 0: none.")
    ] = 0.0,
    active: Annotated[bool, typer.Option("--active/--disable", help="Whether it limits.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Create (or replace) a global concurrency limit NAME."""
    if not _NAME.fullmatch(name):
        fail(f"limit name {name!r}: letters, digits, '_', '.', '-' (at most 200)", code=2)
    _save(name, {"limit": limit, "slot_decay_per_second": slot_decay_per_second,
                 "active": active}, as_json)  # fmt: skip


@app.command("update")
def update(
    name: str,
    limit: Annotated[int | None, typer.Option("--limit", "-l", min=0)] = None,
    slot_decay_per_second: Annotated[float | None, typer.Option(min=0)] = None,
    active: Annotated[bool | None, typer.Option("--enable/--disable")] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a limit's slots, decay or whether it is active."""
    body = _read(name)
    changes = {"limit": limit, "slot_decay_per_second": slot_decay_per_second, "active": active}
    body.update({k: v for k, v in changes.items() if v is not None})
    _save(name, body, as_json)


@app.command("inspect")
def inspect(name: str, as_json: JsonOption = False) -> None:
    """Show one limit."""
    shown = _shown(name, _read(name))
    if as_json:
        print_json(shown)
        return
    for key, value in shown.items():
        console.print(f"{key}: {value}", markup=False)


@app.command("ls")
def list_limits(as_json: JsonOption = False) -> None:
    """List the global concurrency limits."""

    async def read(store: EventStore) -> Any:
        return await store.list_documents(GLOBAL_LIMIT)

    rows = [_shown(d.name, d.body) for d in with_store(read)]
    if as_json:
        print_json({"limits": rows})
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "LIMIT", "DECAY/S", "ACTIVE"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], str(row["limit"]), f"{row['slot_decay_per_second']:g}",
                      "yes" if row["active"] else "no")  # fmt: skip
    console.print(table if rows else "[dim]no global concurrency limits[/]")


@app.command("delete")
def delete(name: str) -> None:
    """Remove a limit (code waiting for its slots goes on within a second)."""

    async def remove(store: EventStore) -> bool:
        return await delete_document(store, GLOBAL_LIMIT, name)

    if not with_store(remove):
        fail(f"no global concurrency limit named {name!r}")
    console.print(f"limit {name}: removed", markup=False)
