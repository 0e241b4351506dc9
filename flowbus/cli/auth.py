"""``flowbus auth``: NATS identities per role (docs/security.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowbus.broker.nats_auth import add_agent, init
from flowbus.cli.common import console, fail
from flowbus.engine.errors import UsageError

app = typer.Typer(help="NATS identities per role: who may publish and read what.",
                  no_args_is_help=True)  # fmt: skip
Folder = Annotated[Path, typer.Argument(help="Where the files go (kept secret: 0600 files).")]


@app.command("init")
def auth_init(folder: Folder) -> None:
    """Make an operator, an account and a user per role in FOLDER: auth.conf for the
    nats-server's configuration, and admin.creds, orchestrator.creds, service.creds and
    viewer.creds (point a process at its file with FLOWBUS_NATS_CREDS)."""
    try:
        written = init(folder)
    except UsageError as exc:
        fail(str(exc), code=2)
    for path in written:
        console.print(str(path), markup=False)
    console.print(
        f"include {folder / 'auth.conf'} in the nats-server's configuration; add agents with "
        "`flowbus auth add-agent NAME --queue QUEUE " + str(folder) + "`",
        markup=False,
    )


@app.command("add-agent")
def auth_add_agent(
    name: Annotated[str, typer.Argument(help="The agent's name (flowbus agent start -n NAME).")],
    folder: Folder,
    queue: Annotated[
        list[str], typer.Option("--queue", "-q", help="A queue it serves (repeat for more).")
    ],
) -> None:
    """Give agent NAME its own credential (FOLDER/agent-NAME.creds), allowed the subjects of
    its name and QUEUEs only. The server's configuration does not change."""
    try:
        path = add_agent(folder, name, tuple(queue))
    except UsageError as exc:
        fail(str(exc), code=2)
    console.print(str(path), markup=False)
