"""``POST /hooks/<slug>``: a request from another system becomes an event (``engine/webhooks.py``).

The slug is the caller's credential (no token: GitHub or Stripe cannot send one), so this route
sits outside ``/api/v1`` and its roles. Answers: 204 once the event is stored by JetStream; 404
for a slug no enabled webhook has; 401 when the signature is missing or wrong; 400 with the
reason when the template cannot make an event (and a ``webhook.failed`` event says so to
automations); 503 when NATS cannot take the event.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from flowbus.api.common import client_of, store_of
from flowbus.broker import protocol as p
from flowbus.engine.blocks import BLOCK, decrypted
from flowbus.engine.store import EventStore
from flowbus.engine.webhooks import (
    RESOURCE_PREFIX,
    WEBHOOK,
    InboundWebhook,
    WebhookError,
    read_webhook,
    render_event,
    signature_matches,
    slug_hash,
)

log = structlog.get_logger("flowbus.api")
router = APIRouter()


def _refused(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": None}}, status)


async def _find(store: EventStore, slug: str) -> InboundWebhook | None:
    wanted = slug_hash(slug)
    for document in await store.list_documents(WEBHOOK):
        try:
            webhook = read_webhook(document.body)
        except WebhookError:
            continue
        if webhook.enabled and webhook.slug_sha256 == wanted:
            return webhook
    return None


async def _secret(store: EventStore, block: str) -> str | None:
    name = block if "/" in block else f"secret/{block}"
    document = await store.get_document(BLOCK, name)
    if document is None:
        return None
    value = decrypted(document.body)["data"].get("value")
    return str(value) if value is not None else None


@router.api_route("/hooks/{slug}", methods=["GET", "POST", "PUT", "PATCH"], include_in_schema=False)
async def receive(request: Request, slug: str) -> Response:
    store = store_of(request)
    webhook = await _find(store, slug)
    if webhook is None:
        return _refused(404, "not_found", "no webhook has this URL")
    raw = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    if webhook.signature is not None:
        secret = await _secret(store, webhook.signature.secret_block)
        if secret is None:
            log.warning("webhook's secret block is missing", webhook=webhook.name,
                        block=webhook.signature.secret_block)  # fmt: skip
            return _refused(401, "bad_signature", "the webhook's secret is not set up")
        given = headers.get(webhook.signature.header.lower(), "")
        if not signature_matches(webhook.signature, secret, raw, given):
            return _refused(401, "bad_signature",
                            f"{webhook.signature.header} does not sign this body")  # fmt: skip
    client = client_of(request)
    try:
        event = render_event(webhook, request.method, headers, raw)
        checked = p.CustomEvent.model_validate(event)
    except (WebhookError, ValueError) as exc:
        reason = str(exc)
        await _say_failed(client, webhook.name, reason, request.method, headers)
        return _refused(400, "bad_request", reason)
    await client.emit(checked.type, checked.resource, checked.labels, checked.payload,
                      checked.id, checked.related)  # fmt: skip
    return Response(status_code=204)


async def _say_failed(
    client: Any, name: str, reason: str, method: str, headers: dict[str, str]
) -> None:
    """A ``webhook.failed`` event, for automations to alert on (best effort: the caller gets
    its 400 either way)."""
    try:
        await client.emit(
            "webhook.failed",
            RESOURCE_PREFIX + name,
            {"webhook": name},
            {"error": reason[:2000], "method": method,
             "content_type": headers.get("content-type", "")},
        )  # fmt: skip
    except Exception as exc:  # NATS away: the log keeps it
        log.warning("could not publish webhook.failed", webhook=name, error=repr(exc))


__all__ = ["router"]
