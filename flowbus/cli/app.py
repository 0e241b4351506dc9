"""The root of the ``flowbus`` command."""

from __future__ import annotations

import typer

from flowbus.cli import deployments, runs, store
from flowbus.cli.up import up

app = typer.Typer(
    name="flowbus",
    help="flowbus: Python workflows on NATS work queues, every state change an event.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(runs.app, name="runs")
app.add_typer(store.app, name="store")
app.add_typer(deployments.app, name="deployments")
app.command("deploy")(deployments.deploy)
app.command("up")(up)


@app.command("version")
def version() -> None:
    """Print the flowbus version."""
    from flowbus import __version__

    typer.echo(__version__)


def main() -> None:
    app()
