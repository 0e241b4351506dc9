"""Helpers shared by CLI commands: running async store calls, printing JSON, failing clearly."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flowbus.engine.errors import FlowbusError
from flowbus.engine.store import EventStore, FlowRunView

if TYPE_CHECKING:
    from flowbus.client import Client

T = TypeVar("T")
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error on stderr and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def with_store(action: Callable[[EventStore], Awaitable[T]]) -> T:
    """Open the configured store, run ``action`` on it, close it; store errors exit cleanly.
    With a profile (or ``FLOWBUS_API_URL``) the store is read through the server's HTTP API."""
    from flowbus.client import ClientError

    async def main() -> T:
        store = _store()
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except ClientError as exc:  # the server's refusal, through its API
        fail(str(exc))
    except FlowbusError as exc:
        fail(str(exc))


def found_or_fail(
    fetch: Callable[[EventStore], Awaitable[T | None]], missing: str, code: int = 1
) -> T:
    """What ``fetch`` finds in the store; ``missing`` (exit ``code``) when it finds nothing."""
    found = with_store(fetch)
    if found is None:
        fail(missing, code)
    return found


def act_as_cli_user() -> None:
    """Record what this command writes as the doing of ``cli:<user>`` (``engine/actors.py``);
    daemons never call it (what they do on their own has no actor)."""
    from flowbus.engine.actors import actor_var, cli_actor

    if actor_var.get() is None:
        actor_var.set(cli_actor())


def _store() -> EventStore:
    from flowbus.remote.store import configured_store

    act_as_cli_user()
    return configured_store()


def client_options() -> dict[str, Any]:
    """How the CLI's ``flowbus.Client`` reaches flowbus: the active profile's API, or NATS.
    What the command causes is recorded as ``cli:<user>``'s (through a server's API: as its
    token's)."""
    from flowbus.remote.profiles import active_api

    act_as_cli_user()

    api = active_api()
    return {"api_url": api.url, "api_token": api.token} if api is not None else {}


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


async def resolve_run(store: EventStore, run_ref: str) -> FlowRunView:
    """A flow run by full id or unique id prefix."""
    run = await store.get_flow_run(run_ref)
    if run is not None:
        return run
    matches = await store.find_flow_runs(run_ref, limit=2)
    if not matches:
        fail(f"no flow run matches {run_ref!r}")
    if len(matches) > 1:
        fail(f"{run_ref!r} matches several flow runs; give more of the id")
    return matches[0]


def short_time(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def compact_time(value: str | None, now: datetime | None = None) -> str:
    """A time in few characters, for narrow tables: ``15:59:46`` today, else ``12-07 15:59``
    (this year) or ``2025-12-07 15:59``."""
    if not value:
        return "-"
    when = datetime.fromisoformat(value).astimezone()
    today = (now or datetime.now(when.tzinfo)).astimezone(when.tzinfo)
    if when.date() == today.date():
        return when.strftime("%H:%M:%S")
    return when.strftime("%m-%d %H:%M" if when.year == today.year else "%Y-%m-%d %H:%M")


def listed_time(value: str | None) -> str:
    """A time in a table: whole on a wide terminal, compact on a narrow one (80 columns)."""
    return compact_time(value) if console.width < 110 else short_time(value)


def listing(*columns: str, whole: tuple[str, ...] = ()) -> Table:
    """A table of many rows, as every ``ls`` prints one: no box, bold headers, no padding at
    its edges; the ``whole`` columns never wrap (ids, names one copies), the others fold."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=column in whole, overflow="fold")
    return table


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


STATE_STYLES = {
    "COMPLETED": "green",
    "FAILED": "red",
    "CRASHED": "bold red",
    "CANCELLED": "dim",
    "CANCELLING": "yellow",
    "RUNNING": "cyan",
    "PENDING": "blue",
    "SCHEDULED": "blue",
    "PAUSED": "yellow",
}


def styled_state(state_type: str, state_name: str) -> str:
    return f"[{STATE_STYLES.get(state_type, 'white')}]{state_name}[/]"


def with_client(action: Callable[[Client], Awaitable[T]]) -> T:
    """Connect a ``flowbus.Client``, run ``action`` with it; refusals exit with their message."""
    from flowbus.client import Client, ClientError

    async def main() -> T:
        async with Client(**client_options()) as client:
            return await action(client)

    try:
        return asyncio.run(main())
    except ClientError as exc:
        bad_input = ("invalid_parameters", "unknown_deployment", "invalid_input")
        fail(str(exc), code=2 if exc.code in bad_input else 1)
    except FlowbusError as exc:
        fail(str(exc))


def exit_when_threads_end(patience: float = 10.0) -> None:
    """A stopped daemon exits: a library thread left running (a driver's worker, say) gets
    ``patience`` seconds, then is named on stderr and the process exits anyway."""
    deadline = time.monotonic() + patience
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon]
    if len(left) > 1:
        err_console.print(f"threads still running after the stop: {left[1:]}; exiting anyway")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
