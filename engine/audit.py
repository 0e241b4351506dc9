"""The audit trail: every event that carries an ``actor`` (who caused it, ``engine/actors.py``)
is listed by ``flowbus audit`` and ``GET /api/v1/audit``, from the store's ``audit``
projection. What a person causes that no event of its own records is an ``audit.entry``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flowbus.engine.clock import canonical, parse_duration
from flowbus.engine.errors import UsageError
from flowbus.engine.event_types import EventType
from flowbus.engine.records import EventRecord, make_record


def audit_record(
    action: str, subject: str, actor: str | None, details: dict[str, Any] | None = None
) -> EventRecord:
    """An ``audit.entry`` in a stream of its own (entries never contend)."""
    fields = {"action": action, "subject": subject, "actor": actor, "details": details or {}}
    return make_record(str(uuid.uuid4()), 1, EventType.AUDIT_ENTRY, fields)


def since_time(since: str | None) -> str | None:
    """``1d``, ``12h`` (ago) or an ISO 8601 time, as the store compares it."""
    if since is None:
        return None
    try:
        return canonical(datetime.now(UTC) - parse_duration(since))
    except UsageError:
        pass
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise UsageError(f"since {since!r}: a duration (1d, 12h) or an ISO 8601 time") from None
    return canonical(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def audit_row(kind: str, data: dict[str, Any]) -> tuple[Any, ...] | None:
    """The audit projection's row of an event, if it has an actor: (event id, occurred, actor,
    action, subject, stream id)."""
    actor = data.get("actor")
    if not actor:
        return None
    if kind == EventType.DOCUMENT_DELETED and data.get("kind") == "api_token":
        return None  # named by its digest only: the revoke's own audit entry names it
    action, subject = _described(kind, data)
    return (data["id"], data["occurred"], str(actor), action, subject, data["stream_id"])


def _described(kind: str, data: dict[str, Any]) -> tuple[str, str]:
    """What the event did, and to what, in a word each."""
    if kind == EventType.FLOW_RUN_CREATED:
        return "run.submitted", data["stream_id"]
    if kind == EventType.FLOW_RUN_STATE:
        return f"run.{str(data['state']['name']).lower()}", data["stream_id"]
    if kind == EventType.DEPLOYMENT_SAVED:
        return "deployment.saved", str(data.get("name", ""))
    if kind in (EventType.DOCUMENT_SAVED, EventType.DOCUMENT_DELETED):
        verb = "saved" if kind == EventType.DOCUMENT_SAVED else "deleted"
        name = str(data.get("name", ""))
        body = data.get("body")
        if data.get("kind") == "api_token":  # its document is named by the token's digest
            name = str(body.get("name", "")) if isinstance(body, dict) else "(a token)"
        return f"{data.get('kind')}.{verb}", name
    if kind == EventType.BLOCK_READ:
        return "block.read", f"{data.get('block')} for run {data.get('run_id')}"
    if kind == EventType.AUDIT_ENTRY:
        return str(data.get("action", "")), str(data.get("subject", ""))
    return kind, data["stream_id"]


__all__ = ["audit_record", "audit_row", "since_time"]
