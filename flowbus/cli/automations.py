"""``flowbus automation``: triggers and actions, from YAML or JSON files (or Python)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.table import Table

from flowbus.cli.common import (
    client_options,
    console,
    fail,
    print_json,
    short_time,
    with_store,
)
from flowbus.engine.automations import AUTOMATION, Automation
from flowbus.engine.documents import delete_document, save_document
from flowbus.engine.store import DocumentView, EventStore

app = typer.Typer(help="Automations: when events happen, take actions.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")]


def read_automations(path: Path) -> list[Automation]:
    """One automation, or a list of them, from a YAML (or JSON) file."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        fail(f"cannot read {path}: {exc}", code=2)
    items = loaded if isinstance(loaded, list) else [loaded]
    automations = []
    for index, item in enumerate(items):
        try:
            automations.append(Automation.model_validate(item))
        except ValidationError as exc:
            where = f"{path}" + (f" (item {index + 1})" if len(items) > 1 else "")
            fail(f"invalid automation in {where}:\n{exc}", code=2)
    return automations


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def summary(automation: dict[str, Any]) -> str:
    trigger = automation["trigger"]
    match = trigger["match"]
    what = " | ".join(_listed(match["type"])) + "".join(
        f" {k}={'|'.join(_listed(v))}" for k, v in match.get("labels", {}).items()
    )
    if trigger["kind"] == "absence":
        return f"no {what} within {trigger['within']:g} s before cron {trigger['cron']}"
    times = (
        f"{trigger['threshold']}x within {trigger['within']:g} s: "
        if trigger["threshold"] > 1
        else ""
    )
    actions = ", ".join(a["kind"] for a in automation["actions"])
    return f"{times}{what} -> {actions}"


def announce_change() -> None:
    """Have a running automation engine read the automations again before this command ends,
    so an event published afterwards meets them. Without a stack running there is nobody to
    tell (an engine reads them when it starts)."""
    from flowbus.client import Client

    async def main() -> None:
        try:
            async with Client(**client_options()) as client:
                await asyncio.wait_for(client.automations_changed(), 6)
        except Exception:
            pass

    asyncio.run(main())


def _shown(document: DocumentView) -> dict[str, Any]:
    return {**document.body, "updated": document.updated, "version": document.version}


@app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="A YAML or JSON file: one automation or a list.")],
    as_json: JsonOption = False,
) -> None:
    """Create automations (or replace those with the same names)."""
    automations = read_automations(file)

    async def save(store: EventStore) -> list[DocumentView]:
        return [
            await save_document(store, AUTOMATION, a.name, a.model_dump(mode="json"))
            for a in automations
        ]

    saved = with_store(save)
    announce_change()
    if as_json:
        print_json({"automations": [_shown(d) for d in saved]})
        return
    for document in saved:
        console.print(f"automation {document.name} (version {document.version}): "
                      f"{summary(document.body)}", markup=False)  # fmt: skip


@app.command("ls")
def list_automations(as_json: JsonOption = False) -> None:
    """List automations."""

    async def fetch(store: EventStore) -> list[DocumentView]:
        return await store.list_documents(AUTOMATION)

    found = with_store(fetch)
    if as_json:
        print_json({"automations": [_shown(d) for d in found]})
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "STATUS", "WHEN -> DO", "UPDATED"):
        table.add_column(column)
    for document in found:
        status = "[green]enabled[/]" if document.body["enabled"] else "[yellow]paused[/]"
        table.add_row(document.name, status, summary(document.body), short_time(document.updated))
    console.print(table if found else "[dim]no automations[/]")


def _set_enabled(name: str, enabled: bool, as_json: bool) -> None:
    async def save(store: EventStore) -> DocumentView | None:
        found = await store.get_document(AUTOMATION, name)
        if found is None:
            return None
        return await save_document(store, AUTOMATION, name, {**found.body, "enabled": enabled})

    saved = with_store(save)
    if saved is None:
        fail(f"no automation named {name!r}")
    announce_change()
    if as_json:
        print_json(_shown(saved))
        return
    console.print(f"automation {name}: {'enabled' if enabled else 'paused'}", markup=False)


@app.command("pause")
def pause(name: str, as_json: JsonOption = False) -> None:
    """Pause an automation: events that happen meanwhile do not trigger it."""
    _set_enabled(name, False, as_json)


@app.command("resume")
def resume(name: str, as_json: JsonOption = False) -> None:
    """Resume a paused automation."""
    _set_enabled(name, True, as_json)


@app.command("rm")
def remove(name: str) -> None:
    """Delete an automation (what it did stays in the event log)."""

    async def delete(store: EventStore) -> bool:
        return await delete_document(store, AUTOMATION, name)

    if not with_store(delete):
        fail(f"no automation named {name!r}")
    announce_change()
    console.print(f"automation {name} deleted", markup=False)
