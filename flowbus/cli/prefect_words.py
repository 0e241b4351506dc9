"""The commands Prefect's guide teaches, under the same words: ``flowbus deployment build``,
``flowbus deployment run`` and ``flowbus cloud login``."""

from __future__ import annotations

import typer

from flowbus.cli import deployments, profiles, submit

deployment_app = typer.Typer(help="Prefect's spelling: deployment build ... --apply.",
                             no_args_is_help=True)  # fmt: skip
deployment_app.command("build", help="The same as `flowbus deploy` (always applied).")(
    deployments.deploy
)
deployment_app.command("run", help="The same as `flowbus run`.")(submit.run)

cloud_app = typer.Typer(help="Reaching a team's flowbus server.", no_args_is_help=True)
cloud_app.command("login", help="The same as `flowbus login`.")(profiles.login)

__all__ = ["cloud_app", "deployment_app"]
