"""``flowbus block`` and ``flowbus variable``: typed configuration and plain named values.

Secret fields of blocks are encrypted in the store and shown as ``********`` here, with or
without ``--json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from flowbus.cli.common import console, fail, print_json, short_time, with_store
from flowbus.cli.deployments import parse_params
from flowbus.engine.blocks import (
    BLOCK,
    BLOCK_TYPE,
    Block,
    delete_block,
    register_built_in,
    register_type,
    rotate_secrets,
    save_block_data,
    shown_block,
)
from flowbus.engine.entrypoints import load_object
from flowbus.engine.errors import FlowbusError
from flowbus.engine.store import DocumentView, EventStore
from flowbus.engine.variables import VARIABLE, aget, aset, aunset, tags_of
from flowbus.remote.store import ApiStore

block_app = typer.Typer(help="Blocks: typed configuration, with encrypted secrets.",
                        no_args_is_help=True)  # fmt: skip
variable_app = typer.Typer(help="Variables: named JSON values.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")]


def _split(ref: str) -> tuple[str, str]:
    type_name, sep, name = ref.partition("/")
    if not sep or not type_name or not name:
        fail(f"{ref!r}: name a block as TYPE/NAME (secret/api-key)", code=2)
    return type_name, name


def _store_call(action: Any) -> Any:
    try:
        return with_store(action)
    except FlowbusError as exc:
        fail(str(exc), code=2)
    except ValidationError as exc:
        fail(f"invalid block data:\n{exc}", code=2)


@block_app.command("register")
def block_register(
    target: Annotated[str, typer.Argument(help="path/to/file.py:BlockClass or module:BlockClass")],
    as_json: JsonOption = False,
) -> None:
    """Register a block type (a subclass of flowbus.Block) so blocks of it can be set here."""
    try:
        kind = load_object(target, Path.cwd())
    except FlowbusError as exc:
        fail(str(exc), code=2)
    if not (isinstance(kind, type) and issubclass(kind, Block)):
        fail(f"{target} is not a subclass of flowbus.Block", code=2)

    async def save(store: EventStore) -> DocumentView:
        return await register_type(kind, store)

    saved = _store_call(save)
    if as_json:
        print_json({"type": saved.name, **saved.body})
        return
    fields = ", ".join(saved.body["schema"].get("properties", {}))
    console.print(f"block type {saved.name}: {fields}", markup=False)


@block_app.command("types")
def block_types(as_json: JsonOption = False) -> None:
    """List block types (the built-in ones and those registered)."""

    async def fetch(store: EventStore) -> list[DocumentView]:
        await register_built_in(store)
        return await store.list_documents(BLOCK_TYPE)

    types = _store_call(fetch)
    if as_json:
        print_json({"types": [{"type": t.name, **t.body} for t in types]})
        return
    for t in types:
        fields = ", ".join(
            f"{k}{' (secret)' if k in t.body['secret_fields'] else ''}"
            for k in t.body["schema"].get("properties", {})
        )
        console.print(f"{t.name}: {fields}", markup=False)


@block_app.command("set")
def block_set(
    ref: Annotated[str, typer.Argument(help="TYPE/NAME")],
    values: Annotated[list[str] | None, typer.Argument(help="field=value ...")] = None,
    file: Annotated[Path | None, typer.Option(help="A JSON file of the fields.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Set a block from field=value pairs (or a JSON file), validated by its type."""
    type_name, name = _split(ref)
    data: dict[str, Any] = {}
    if file is not None:
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            fail(f"cannot read {file}: {exc}", code=2)
        if not isinstance(data, dict):
            fail(f"{file} must hold a JSON object", code=2)
    data.update(parse_params(values or []))

    async def save(store: EventStore) -> DocumentView:
        if isinstance(store, ApiStore):  # the server encrypts the secrets with its key
            return await store.save_block(type_name, name, data)
        await register_built_in(store)
        return await save_block_data(store, type_name, name, data)

    saved = _store_call(save)
    if as_json:
        print_json(shown_block(saved))
        return
    console.print(f"block {saved.name} (version {saved.version}) saved", markup=False)


@block_app.command("ls")
def block_ls(
    type_name: Annotated[str | None, typer.Option("--type", help="Only this type.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List blocks (secret fields masked)."""

    async def fetch(store: EventStore) -> list[DocumentView]:
        return await store.list_documents(BLOCK)

    blocks = [shown_block(b) for b in _store_call(fetch)]
    blocks = [b for b in blocks if type_name in (None, b["type"])]
    if as_json:
        print_json({"blocks": blocks})
        return
    table = Table(box=None, header_style="bold")
    for column in ("BLOCK", "FIELDS", "VERSION", "UPDATED"):
        table.add_column(column)
    for b in blocks:
        fields = ", ".join(f"{k}={v}" for k, v in b["data"].items())
        table.add_row(
            f"{b['type']}/{b['name']}", fields, str(b["version"]), short_time(b["updated"])
        )
    console.print(table if blocks else "[dim]no blocks[/]")


@block_app.command("show")
def block_show(
    ref: Annotated[str, typer.Argument(help="TYPE/NAME")], as_json: JsonOption = False
) -> None:
    """Show a block (secret fields masked)."""
    type_name, name = _split(ref)

    async def fetch(store: EventStore) -> DocumentView | None:
        return await store.get_document(BLOCK, f"{type_name}/{name}")

    found = _store_call(fetch)
    if found is None:
        fail(f"no block {ref}")
    shown = shown_block(found)
    if as_json:
        print_json(shown)
        return
    console.print(f"{ref} (version {shown['version']}, updated {short_time(shown['updated'])})",
                  markup=False)  # fmt: skip
    for key, value in shown["data"].items():
        console.print(f"  {key}: {json.dumps(value)}", markup=False)


@block_app.command("rm")
def block_rm(ref: Annotated[str, typer.Argument(help="TYPE/NAME")]) -> None:
    """Delete a block (its history stays in the event log, encrypted)."""
    type_name, name = _split(ref)

    async def remove(store: EventStore) -> bool:
        return await delete_block(store, type_name, name)

    if not _store_call(remove):
        fail(f"no block {ref}")
    console.print(f"block {ref} deleted", markup=False)


@block_app.command("key")
def block_key() -> None:
    """Print a new secret key for FLOWBUS_SECRET_KEY (set the same one on every machine)."""
    from cryptography.fernet import Fernet

    typer.echo(Fernet.generate_key().decode())


@block_app.command("rotate-key")
def block_rotate_key() -> None:
    """Encrypt every block secret again with the first key of FLOWBUS_SECRET_KEY (set it to
    NEW,OLD first, on every machine); drop OLD once this is done."""

    async def rotate(store: EventStore) -> tuple[int, int]:
        return await rotate_secrets(store)

    values, blocks = _store_call(rotate)
    console.print(f"{values} secrets in {blocks} blocks encrypted with the first key; "
                  "the other keys can be dropped", markup=False)  # fmt: skip


# --- variables ---------------------------------------------------------------------------------


@variable_app.command("set")
def variable_set(
    name: str,
    value: Annotated[str, typer.Argument(help="JSON (3, true, [1,2], {...}) or plain text.")],
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag", "-t", help=("A tag (repeatable); without any, the variable keeps its tags.")
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Set a variable."""
    parsed = parse_params([f"v={value}"])["v"]

    async def save(store: EventStore) -> None:
        await aset(name, parsed, store, tags=tag)

    _store_call(save)
    if as_json:
        print_json({"name": name, "value": parsed})
        return
    console.print(f"{name} = {json.dumps(parsed)}", markup=False)


@variable_app.command("get")
def variable_get(name: str, as_json: JsonOption = False) -> None:
    """Print a variable's value (exit 1 when it is not set)."""

    async def read(store: EventStore) -> Any:
        return await aget(name, store=store)

    value = _store_call(read)
    if as_json:
        print_json({"name": name, "value": value})
        return
    typer.echo(value if isinstance(value, str) else json.dumps(value))


@variable_app.command("ls")
def variable_ls(as_json: JsonOption = False) -> None:
    """List variables."""

    async def fetch(store: EventStore) -> tuple[list[DocumentView], dict[str, list[str]]]:
        return await store.list_documents(VARIABLE), await tags_of(store)

    found, tags = _store_call(fetch)
    rows = [{"name": v.name, "value": v.body, "tags": tags.get(v.name, []),
             "updated": v.updated, "version": v.version} for v in found]  # fmt: skip
    if as_json:
        print_json({"variables": rows})
        return
    for row in rows:
        tagged = f"  [{', '.join(row['tags'])}]" if row["tags"] else ""
        console.print(f"{row['name']} = {json.dumps(row['value'])}{tagged}", markup=False)
    if not rows:
        console.print("[dim]no variables[/]")


@variable_app.command("rm")
def variable_rm(name: str) -> None:
    """Delete a variable."""

    async def remove(store: EventStore) -> bool:
        return await aunset(name, store)

    if not _store_call(remove):
        fail(f"no variable named {name!r}")
    console.print(f"variable {name} deleted", markup=False)
