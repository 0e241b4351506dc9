"""Inbound webhooks: ``POST /hooks/<slug>`` turns a request from another system (GitHub, Stripe,
a monitoring tool) into an event, which automations and deployment triggers react to.

A webhook is a document (kind ``webhook``): its name, a Jinja template with Prefect Cloud's
webhook variables (``body``: the parsed JSON or form body, else its text; ``headers``, case
free; ``method``; ``raw_body``) that renders the event as JSON, and an optional signature
check (an HMAC of the raw body, GitHub's way: a header ``sha256=<hex digest>`` made with a
secret kept in a Secret block). The URL's slug is the webhook's credential: it is shown once
when made or rotated and stored only as its SHA-256, so nobody who reads documents learns it.

The rendered JSON is an event in Prefect's shape (``event``, ``resource`` with
``prefect.resource.id`` and labels, ``related``, ``payload``, optional ``id``) or flowbus's
(``type``, ``resource``, ``labels``, ``payload``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowbus.engine.templates import TemplateError, check_syntax, render_text

WEBHOOK = "webhook"
#: The label and related resource that say which webhook made an event.
RESOURCE_PREFIX = "flowbus.webhook."
_RESOURCE_ID_KEYS = ("prefect.resource.id", "flowbus.resource.id")


class WebhookSignature(BaseModel):
    """Requests must carry ``header: <prefix><hex HMAC of the raw body>``, keyed with the value
    of the Secret block ``secret_block`` (GitHub: ``X-Hub-Signature-256``, ``sha256=``)."""

    model_config = ConfigDict(extra="forbid")

    header: str = "X-Hub-Signature-256"
    secret_block: str = Field(min_length=1)
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    prefix: str = "sha256="


class InboundWebhook(BaseModel):
    """A webhook as stored (``slug_sha256``: the hash of its URL's slug)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,99}$")
    description: str | None = None
    enabled: bool = True
    template: str = Field(min_length=1, max_length=100_000)
    signature: WebhookSignature | None = None
    slug_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class WebhookError(ValueError):
    """A request the webhook cannot turn into an event; the message says why (the 400)."""


def new_slug() -> str:
    """An unguessable slug (192 random bits)."""
    return secrets.token_urlsafe(24)


def slug_hash(slug: str) -> str:
    return hashlib.sha256(slug.encode()).hexdigest()


def check_template(template: str) -> None:
    """Refuse a template Jinja cannot parse (at creation, not at the first request)."""
    try:
        check_syntax(template)
    except TemplateError as exc:
        raise WebhookError(f"the template does not parse: {exc}") from exc


def signature_matches(signature: WebhookSignature, secret: str, raw: bytes, given: str) -> bool:
    """Is ``given`` (the header's value) the HMAC of ``raw`` under ``secret``?"""
    digest = hmac.new(secret.encode(), raw, getattr(hashlib, signature.algorithm)).hexdigest()
    return hmac.compare_digest(f"{signature.prefix}{digest}".encode(), given.strip().encode())


class _Headers(dict[str, str]):
    """Request headers, read whatever the case (``headers['X-GitHub-Event']``)."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


def parsed_body(raw: bytes, content_type: str) -> Any:
    """The body as templates see it: JSON or a form as a mapping, else its text."""
    text = raw.decode("utf-8", errors="replace")
    if "application/x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(text, keep_blank_values=True))
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return text


def render_event(
    webhook: InboundWebhook, method: str, headers: dict[str, str], raw: bytes
) -> dict[str, Any]:
    """The event the request makes: the fields of a custom event (``id``, ``type``,
    ``occurred``, ``resource``, ``labels``, ``payload``, ``related``). ``WebhookError`` when the
    template fails or does not make an event."""
    context = {
        "body": parsed_body(raw, headers.get("content-type", "")),
        "headers": _Headers({k.lower(): v for k, v in headers.items()}),
        "method": method,
        "raw_body": raw.decode("utf-8", errors="replace"),
    }
    try:
        text = render_text(webhook.template, context)
    except TemplateError as exc:
        raise WebhookError(f"the template failed: {exc}") from exc
    try:
        made = json.loads(text)
    except ValueError as exc:
        raise WebhookError(f"the template did not make JSON ({exc}): {text[:200]!r}") from exc
    if not isinstance(made, dict):
        raise WebhookError("the template made JSON that is not an object (an event)")
    return as_custom_event(webhook.name, made)


def as_custom_event(webhook: str, made: dict[str, Any]) -> dict[str, Any]:
    """An event in Prefect's shape or flowbus's, as a custom event's fields."""
    event_type = made.get("event", made.get("type"))
    if not isinstance(event_type, str) or not event_type:
        raise WebhookError("the event has no name: give 'event' (or 'type')")
    resource = made.get("resource") or {}
    labels: dict[str, str] = {}
    if isinstance(resource, dict):
        resource_id = next((resource[k] for k in _RESOURCE_ID_KEYS if k in resource), None)
        labels = {k: str(v) for k, v in resource.items() if k not in _RESOURCE_ID_KEYS}
    else:
        resource_id = resource
    labels.update({k: str(v) for k, v in (made.get("labels") or {}).items()})
    related = [
        {k: str(v) for k, v in item.items()}
        for item in made.get("related") or []
        if isinstance(item, dict)
    ]
    related.append({"prefect.resource.id": RESOURCE_PREFIX + webhook,
                    "prefect.resource.role": "webhook"})  # fmt: skip
    payload = made.get("payload") or {}
    if not isinstance(payload, dict):
        payload = {"value": payload}
    return {
        "id": str(made.get("id") or uuid.uuid4()),
        "type": event_type,
        "occurred": datetime.now(UTC).isoformat(),
        "resource": str(resource_id) if resource_id is not None else RESOURCE_PREFIX + webhook,
        "labels": labels,
        "payload": payload,
        "related": related,
    }


def read_webhook(body: Any) -> InboundWebhook:
    """A stored webhook, or ``WebhookError`` saying what is wrong with it."""
    try:
        return InboundWebhook.model_validate(body)
    except ValidationError as exc:
        raise WebhookError(f"not a valid webhook: {exc}") from exc


__all__ = [
    "WEBHOOK",
    "InboundWebhook",
    "WebhookError",
    "WebhookSignature",
    "as_custom_event",
    "check_template",
    "new_slug",
    "parsed_body",
    "read_webhook",
    "render_event",
    "signature_matches",
    "slug_hash",
]
