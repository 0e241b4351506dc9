"""``flowbus artifact``: artifacts by key (Prefect's ``prefect artifact ls`` and ``inspect``);
a run's own are on ``flowbus runs show``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from flowbus.cli.common import console, found_or_fail, print_json, short_time, with_store
from flowbus.engine.artifacts import ArtifactView, latest, latest_of_each_key
from flowbus.engine.store import EventStore

app = typer.Typer(help="Artifacts: tables, links, markdown and progress that runs publish.",
                  no_args_is_help=True)  # fmt: skip
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")]


def _shown(data: object, width: int = 60) -> str:
    text = str(data)
    return text if len(text) <= width else text[: width - 3] + "..."


@app.command("ls")
def list_artifacts(as_json: JsonOption = False) -> None:
    """The latest artifact of each key, newest first (made in a run or in a script)."""

    async def fetch(store: EventStore) -> list[ArtifactView]:
        return await latest_of_each_key(store)

    found = with_store(fetch)
    if as_json:
        print_json({"artifacts": [a.to_dict() for a in found]})
        return
    table = Table(box=None, header_style="bold")
    for column in ("KEY", "TYPE", "RUN", "UPDATED", "DATA"):
        table.add_column(column, overflow="fold" if column == "KEY" else "ellipsis")
    for artifact in found:
        run = (artifact.flow_run_id or "-")[:8]
        table.add_row(artifact.key or "-", artifact.type, run, short_time(artifact.updated),
                      _shown(artifact.data))  # fmt: skip
    console.print(table if found else "[dim]no artifacts with a key[/]")


@app.command("inspect")
def inspect(key: str, as_json: JsonOption = False) -> None:
    """The latest artifact of ``key``, whole."""

    async def fetch(store: EventStore) -> ArtifactView | None:
        return await latest(store, key)

    found = found_or_fail(fetch, f"no artifact with key {key!r}")
    if as_json:
        print_json(found.to_dict())
        return
    run = found.flow_run_id or "none (made outside a run)"
    console.print(f"[bold]{key}[/] ({found.type}), run {run}, updated {short_time(found.updated)}")
    if found.description:
        console.print(found.description, markup=False)
    console.print(found.data if isinstance(found.data, str) else found.to_dict()["data"])
