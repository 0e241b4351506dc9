"""``flowbus token``: the HTTP API's tokens, each with a role (docs/security.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from flowbus.cli.common import console, fail, print_json, short_time
from flowbus.engine.api_tokens import (
    ALL_ROLES,
    create_token,
    list_tokens,
    revoke_token,
)
from flowbus.engine.clock import parse_duration
from flowbus.engine.errors import FlowbusError, UsageError
from flowbus.engine.store import EventStore

app = typer.Typer(help="The HTTP API's tokens: who may read, run, deploy or administer.",
                  no_args_is_help=True)  # fmt: skip
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")]


def _through(action: Any, api_call: Any) -> Any:
    """``action(store)`` on the configured store, or ``api_call(http)`` through the server of
    the active profile (as an admin token of it)."""
    import asyncio

    from flowbus.remote.profiles import active_api

    api = active_api()

    async def main() -> Any:
        from flowbus.cli.common import act_as_cli_user

        act_as_cli_user()
        if api is not None:
            import httpx

            headers = {"authorization": f"Bearer {api.token}"} if api.token else {}
            async with httpx.AsyncClient(base_url=api.url + "/api/v1", headers=headers,
                                         timeout=30) as http:  # fmt: skip
                response = await api_call(http)
                if response.status_code >= 400:
                    error = response.json().get("error", {})
                    raise UsageError(error.get("message", response.text))
                return response.json()
        from flowbus.engine.store import store_from_url

        async with store_from_url() as store:
            return await action(store)

    try:
        return asyncio.run(main())
    except FlowbusError as exc:
        fail(str(exc), code=2)


@app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Who or what holds it (a person, a service).")],
    role: Annotated[str, typer.Option("--role", "-r", help=f"One of {', '.join(ALL_ROLES)}.")],
    expires: Annotated[
        str | None, typer.Option(help="How long it lives: 90d, 12h, 2w (default: for ever).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Make a token and print it, once: nothing shows it again (the store keeps its digest)."""
    try:
        lifetime = parse_duration(expires) if expires else None
    except UsageError as exc:
        fail(str(exc), code=2)

    async def make(store: EventStore) -> dict[str, Any]:
        token = await create_token(store, name, role, lifetime, created_by="cli")
        return {"name": name, "role": role, "token": token}

    async def post(http: Any) -> Any:
        return await http.post("/tokens", json={"name": name, "role": role, "expires": expires})

    made = _through(make, post)
    if as_json:
        print_json(made)
        return
    console.print(f"token {name} ({role}); shown once, keep it secret:", markup=False)
    print(made["token"])


@app.command("ls")
def token_ls(as_json: JsonOption = False) -> None:
    """Every token: name, role, created, last used, expiry (never the token)."""

    async def read(store: EventStore) -> list[dict[str, Any]]:
        return [t.to_dict() for t in await list_tokens(store)]

    async def get(http: Any) -> Any:
        return await http.get("/tokens")

    tokens = _through(read, get)
    if as_json:
        print_json({"tokens": tokens})
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "ROLE", "CREATED", "LAST USED", "EXPIRES"):
        table.add_column(column)
    for t in tokens:
        table.add_row(t["name"], t["role"], short_time(t["created"]),
                      short_time(t["last_used"]) if t["last_used"] else "-",
                      short_time(t["expires"]) if t["expires"] else "never")  # fmt: skip
    console.print(table)


@app.command("revoke")
def token_revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Remove a token: refused from its next request on (its sessions end too)."""

    async def remove(store: EventStore) -> dict[str, Any]:
        await revoke_token(store, name)
        return {"name": name, "revoked": True}

    async def delete(http: Any) -> Any:
        return await http.delete(f"/tokens/{name}")

    _through(remove, delete)
    console.print(f"token {name} revoked", markup=False)
