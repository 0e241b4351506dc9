"""``flowbus store``: rebuild the projections from the event log, or verify them."""

from __future__ import annotations

import typer

from flowbus.cli.common import console, fail, with_store
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
