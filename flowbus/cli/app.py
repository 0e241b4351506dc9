"""The root of the ``flowbus`` command.

Each command's module is imported when that command runs, not before: ``flowbus variable ls``
loads the variable commands alone, not the orchestrator, the automations engine and NATS's
credentials tooling (a second saved on every command). ``flowbus --help`` loads them all."""

from __future__ import annotations

import importlib
import sys
from typing import Any, NamedTuple

import typer
from typer.core import TyperGroup


class _Command(NamedTuple):
    """Where a command lives: ``flowbus.cli.<module>.<attribute>``, a Typer app (a group of
    commands) or a function (one command)."""

    module: str
    attribute: str
    hidden: bool = False


#: Help is written as Markdown: a docstring's lines wrap as one paragraph at the terminal's
#: width, and ``--json`` is code, not literal backquotes.
MARKUP: Any = "markdown"

#: The root's commands, in the order ``--help`` lists them.
COMMANDS: dict[str, _Command] = {
    "runs": _Command("runs", "app"),
    "store": _Command("store", "app"),
    "deployments": _Command("deployments", "app"),
    "queues": _Command("queues", "queues_app"),
    "agents": _Command("queues", "agents_app"),
    "server": _Command("daemons", "server_app"),
    "agent": _Command("daemons", "agent_app"),
    "scheduler": _Command("daemons", "scheduler_app"),
    "schedule": _Command("schedules", "app"),
    "block": _Command("blocks", "block_app"),
    "variable": _Command("blocks", "variable_app"),
    "limit": _Command("limits", "app"),
    "gcl": _Command("global_limits", "app"),
    "global-concurrency-limit": _Command("global_limits", "app", hidden=True),
    "automation": _Command("automations", "app"),
    "webhook": _Command("webhooks", "app"),
    "artifact": _Command("artifacts", "app"),
    "artifacts": _Command("artifacts", "app", hidden=True),
    "backfill": _Command("schedules", "backfill"),
    "deploy": _Command("deployments", "deploy"),
    "deployment": _Command("prefect_words", "deployment_app"),
    "cloud": _Command("prefect_words", "cloud_app"),
    "login": _Command("profiles", "login"),
    "profile": _Command("profiles", "app"),
    "run": _Command("submit", "run"),
    "events": _Command("events", "app"),
    "auth": _Command("auth", "app"),
    "token": _Command("tokens", "app"),
    "audit": _Command("audit", "audit"),
    "up": _Command("up", "up"),
}


def load_command(name: str) -> Any:
    """The click command ``flowbus NAME`` is, made as Typer makes it for an app's own command
    or sub-app (so a command behaves the same loaded late as it would loaded at start)."""
    where = COMMANDS[name]
    target = getattr(importlib.import_module(f"flowbus.cli.{where.module}"), where.attribute)
    holder = typer.Typer(rich_markup_mode=MARKUP)
    holder.callback()(lambda: None)  # a group, so the command keeps its own name
    if isinstance(target, typer.Typer):
        target.rich_markup_mode = MARKUP
        holder.add_typer(target, name=name, hidden=where.hidden)
    else:
        holder.command(name, hidden=where.hidden)(target)
    return typer.main.get_command(holder).commands[name]  # type: ignore[attr-defined]


def _flags_without_a_type() -> None:
    """A flag (``--json``) takes no value: its help shows no ``<bool>`` beside it (typer's
    rich help labels every option with its type; a value's type stays)."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_flowbus", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_bool_flag", False) else shown(self, ctx)

    display_type_rich._flowbus = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_a_type()


class _LazyRoot(TyperGroup):
    """The root group: its commands are listed from ``COMMANDS`` and loaded when asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *(n for n in super().list_commands(ctx) if n not in COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in COMMANDS:
            found = self.commands[cmd_name] = load_command(cmd_name)
        return found


app = typer.Typer(
    name="flowbus",
    cls=_LazyRoot,
    rich_markup_mode=MARKUP,
    help="flowbus: Python workflows on NATS work queues, every state change an event.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    # A callback makes the root a group even while ``version`` is its one loaded command.
    pass


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
