"""``flowbus webhook``: URLs other systems post to, each request made an event by a template
(``engine/webhooks.py``, docs/cli.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flowbus.cli.common import console, fail, found_or_fail, print_json, short_time, with_store
from flowbus.engine.documents import delete_document, save_document
from flowbus.engine.store import DocumentView, EventStore
from flowbus.engine.webhooks import (
    WEBHOOK,
    InboundWebhook,
    WebhookError,
    WebhookSignature,
    check_template,
    new_slug,
    slug_hash,
)

app = typer.Typer(help="Inbound webhooks: a URL that turns requests into events.",
                  no_args_is_help=True)  # fmt: skip
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")]


def _template(given: str) -> str:
    """The template as given, or the file's text for ``@path``."""
    if not given.startswith("@"):
        return given
    try:
        return Path(given[1:]).read_text()
    except OSError as exc:
        fail(f"cannot read the template {given[1:]}: {exc}", code=2)


def _url(slug: str) -> str:
    """Where the server takes it: on the active profile's server (or ``$FLOWBUS_API_URL``'s),
    else on the API ``flowbus up`` and ``flowbus server start`` serve by default."""
    from flowbus.api.settings import DEFAULT_API_PORT
    from flowbus.remote.profiles import active_api

    api = active_api()
    base = api.url if api is not None else f"http://127.0.0.1:{DEFAULT_API_PORT}"
    return f"{base.rstrip('/')}/hooks/{slug}"


def _shown(document: DocumentView) -> dict[str, Any]:
    body = {k: v for k, v in document.body.items() if k != "slug_sha256"}
    return {**body, "updated": document.updated, "version": document.version}


def _save(webhook: InboundWebhook) -> DocumentView:
    async def save(store: EventStore) -> DocumentView:
        return await save_document(store, WEBHOOK, webhook.name, webhook.model_dump(mode="json"))

    saved: DocumentView = with_store(save)
    return saved


def _existing(name: str) -> InboundWebhook:
    async def fetch(store: EventStore) -> DocumentView | None:
        return await store.get_document(WEBHOOK, name)

    found = found_or_fail(fetch, f"no webhook named {name!r}")
    return InboundWebhook.model_validate(found.body)


def _say_url(name: str, slug: str, as_json: bool, saved: DocumentView) -> None:
    if as_json:
        print_json({**_shown(saved), "url": _url(slug), "slug": slug})
        return
    console.print(f"webhook {name}: POST {_url(slug)}", markup=False)
    console.print("[dim]the URL is its credential and is shown only now; "
                  "`flowbus webhook rotate` makes a new one[/]")  # fmt: skip


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits and dashes.")],
    template: Annotated[
        str,
        typer.Option(
            "--template",
            "-t",
            help=(
                "Jinja that renders the event as JSON from body, headers, method and raw_body "
                "(@FILE reads it from a file)."
            ),
        ),
    ],
    description: Annotated[str | None, typer.Option(help="What it is for.")] = None,
    signature_secret: Annotated[
        str | None,
        typer.Option(
            help=("A Secret block (secret/NAME) whose value keys the HMAC the sender signs with.")
        ),
    ] = None,
    signature_header: Annotated[str, typer.Option(help="The header carrying it.")] = (
        "X-Hub-Signature-256"
    ),
    signature_algorithm: Annotated[str, typer.Option(help="sha256, sha1 or sha512.")] = "sha256",
    signature_prefix: Annotated[str, typer.Option(help="Before the hex digest.")] = "sha256=",
    as_json: JsonOption = False,
) -> None:
    """Create a webhook (or replace the one with this name, with a new URL); prints its URL."""
    text = _template(template)
    slug = new_slug()
    try:
        check_template(text)
        signature = None
        if signature_secret:
            signature = WebhookSignature.model_validate({
                "header": signature_header, "secret_block": signature_secret,
                "algorithm": signature_algorithm, "prefix": signature_prefix,
            })  # fmt: skip
        webhook = InboundWebhook(name=name, description=description, template=text,
                                 signature=signature, slug_sha256=slug_hash(slug))  # fmt: skip
    except (WebhookError, ValueError) as exc:
        fail(f"invalid webhook: {exc}", code=2)
    _say_url(name, slug, as_json, _save(webhook))


@app.command("rotate")
def rotate(name: str, as_json: JsonOption = False) -> None:
    """Give the webhook a new URL; the old one stops working at once."""
    slug = new_slug()
    webhook = _existing(name).model_copy(update={"slug_sha256": slug_hash(slug)})
    _say_url(name, slug, as_json, _save(webhook))


@app.command("ls")
def list_webhooks(as_json: JsonOption = False) -> None:
    """List webhooks (never their URLs: those are shown once)."""

    async def fetch(store: EventStore) -> list[DocumentView]:
        return await store.list_documents(WEBHOOK)

    found = with_store(fetch)
    if as_json:
        print_json({"webhooks": [_shown(d) for d in found]})
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "STATUS", "SIGNED", "DESCRIPTION", "UPDATED"):
        table.add_column(column)
    for document in found:
        body = document.body
        status = "[green]enabled[/]" if body.get("enabled", True) else "[yellow]disabled[/]"
        signed = (body.get("signature") or {}).get("header", "-")
        table.add_row(document.name, status, signed, body.get("description") or "",
                      short_time(document.updated))  # fmt: skip
    console.print(table if found else "[dim]no webhooks[/]")


def _set_enabled(name: str, enabled: bool) -> None:
    _save(_existing(name).model_copy(update={"enabled": enabled}))
    console.print(f"webhook {name}: {'enabled' if enabled else 'disabled'}", markup=False)


@app.command("disable")
def disable(name: str) -> None:
    """Refuse its requests (404) until enabled again; its URL stays."""
    _set_enabled(name, False)


@app.command("enable")
def enable(name: str) -> None:
    """Take its requests again."""
    _set_enabled(name, True)


@app.command("rm")
def remove(name: str) -> None:
    """Delete a webhook: its URL answers 404 from now on."""

    async def delete(store: EventStore) -> bool:
        return await delete_document(store, WEBHOOK, name)

    if not with_store(delete):
        fail(f"no webhook named {name!r}")
    console.print(f"webhook {name} deleted", markup=False)
