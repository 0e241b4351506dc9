"""``flowbus login`` and ``flowbus profile``: which server the CLI and the client go through."""

from __future__ import annotations

from typing import Annotated

import httpx
import typer
from rich.table import Table

from flowbus.cli.common import console, fail, print_json
from flowbus.engine.errors import UsageError
from flowbus.remote import profiles
from flowbus.remote.profiles import tls_verify

app = typer.Typer(help="Saved servers: the CLI goes through the current one's HTTP API.",
                  no_args_is_help=True)  # fmt: skip


def login(
    url: Annotated[
        str | None, typer.Argument(help="The server's URL (https://flowbus.example.com).")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", "-t", "--key", "-k", help="Its API token.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="The profile's name (default: the host).")
    ] = None,
) -> None:
    """Save a profile for a team's server and make it current (checked first: the server must
    answer with this token). From then on every command goes through its HTTP API."""
    if url is None:  # Prefect's `prefect cloud login` asks; here the server is a team's own
        console.print(
            "flowbus has no hosted cloud: a team runs its own server (`flowbus server start`, "
            "or `flowbus up` on one machine) and each person logs in to it:\n\n"
            "  flowbus login https://flowbus.example.com --token <API token>\n\n"
            "An admin makes tokens with `flowbus token create NAME --role operator` "
            "(docs/security.md). Without a login, commands use this machine's store and NATS.",
            markup=False,
        )
        raise typer.Exit(2)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    probe = f"{url.rstrip('/')}/api/v1/runs?limit=1"
    try:
        answer = httpx.get(probe, headers=headers, timeout=10, verify=tls_verify())
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {exc}")
    if answer.status_code == 401:
        fail(f"{url} refused the token" if token else f"{url} needs a token: --token T")
    if answer.status_code != 200:
        fail(f"{url} is not a flowbus server (GET /api/v1/runs answered {answer.status_code})")
    try:
        saved = profiles.login(url, token, name)
    except UsageError as exc:
        fail(str(exc))
    console.print(f"logged in to {url} (profile {saved!r}, in {profiles.profiles_path()})")


@app.command("ls")
def list_profiles(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The saved profiles; the current one is marked."""
    current, saved = profiles.load_profiles()
    if as_json:
        print_json({"current": current,
                    "profiles": [{"name": n, "url": a.url, "token": bool(a.token)}
                                 for n, a in sorted(saved.items())]})  # fmt: skip
        return
    table = Table(box=None, header_style="bold")
    for column in ("", "NAME", "URL", "TOKEN"):
        table.add_column(column)
    for profile, api in sorted(saved.items()):
        table.add_row("*" if profile == current else "", profile, api.url,
                      "yes" if api.token else "no")  # fmt: skip
    console.print(table if saved else "[dim]no profiles: `flowbus login URL`[/]")


@app.command("use")
def use_profile(name: Annotated[str, typer.Argument(help="A saved profile.")]) -> None:
    """Make a saved profile the current one."""
    try:
        profiles.use(name)
    except UsageError as exc:
        fail(str(exc))
    console.print(f"using {name!r}")


@app.command("rm")
def remove_profile(name: Annotated[str, typer.Argument(help="A saved profile.")]) -> None:
    """Forget a saved profile (if it was current, the CLI works locally again)."""
    try:
        profiles.remove(name)
    except UsageError as exc:
        fail(str(exc))
    console.print(f"removed {name!r}")
