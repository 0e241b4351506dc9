"""The root of the ``flowbus`` command."""

from __future__ import annotations

import sys

import typer

from flowbus.cli import (
    auth,
    automations,
    blocks,
    daemons,
    deployments,
    events,
    global_limits,
    limits,
    profiles,
    queues,
    runs,
    schedules,
    store,
    submit,
    tokens,
)
from flowbus.cli.audit import audit
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
app.add_typer(queues.queues_app, name="queues")
app.add_typer(queues.agents_app, name="agents")
app.add_typer(daemons.server_app, name="server")
app.add_typer(daemons.agent_app, name="agent")
app.add_typer(daemons.scheduler_app, name="scheduler")
app.add_typer(schedules.app, name="schedule")
app.add_typer(blocks.block_app, name="block")
app.add_typer(blocks.variable_app, name="variable")
app.add_typer(limits.app, name="limit")
app.add_typer(global_limits.app, name="gcl")
app.add_typer(global_limits.app, name="global-concurrency-limit", hidden=True)
app.add_typer(automations.app, name="automation")
app.command("backfill")(schedules.backfill)
app.command("deploy")(deployments.deploy)
# The commands Prefect's guide teaches, under the same words.
deployment_app = typer.Typer(help="Prefect's spelling: deployment build ... --apply.",
                             no_args_is_help=True)  # fmt: skip
deployment_app.command("build", help="The same as `flowbus deploy` (always applied).")(
    deployments.deploy
)
deployment_app.command("run", help="The same as `flowbus run`.")(submit.run)
app.add_typer(deployment_app, name="deployment")
cloud_app = typer.Typer(help="Reaching a team's flowbus server.", no_args_is_help=True)
cloud_app.command("login", help="The same as `flowbus login`.")(profiles.login)
app.add_typer(cloud_app, name="cloud")
app.command("login")(profiles.login)
app.add_typer(profiles.app, name="profile")
app.command("run")(submit.run)
app.add_typer(events.app, name="events")
app.add_typer(auth.app, name="auth")
app.add_typer(tokens.app, name="token")
app.command("audit")(audit)
app.command("up")(up)


@app.command("version")
def version() -> None:
    """Print the flowbus version."""
    from flowbus import __version__

    typer.echo(__version__)


def main() -> None:
    # Log lines go to stderr: stdout is for what a command prints (``--json`` is parsed).
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    app()
