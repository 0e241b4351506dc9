"""Documents: named configuration recorded as events, one stream per (kind, name), the latest
body projected into the store's ``documents`` table. Variables, blocks, block types,
concurrency limits and automations are documents of their own kind."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from flowbus.engine.actors import current_actor
from flowbus.engine.event_types import EventType
from flowbus.engine.store import DocumentView, EventStore, store_from_url

T = TypeVar("T")

#: Document stream ids are UUIDv5 of "kind/name" in this namespace.
NAMESPACE = uuid.UUID("0b7f3a52-9d0e-4c8e-8f1a-646f63756d65")


def document_id(kind: str, name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}/{name}"))


async def save_document(store: EventStore, kind: str, name: str, body: Any) -> DocumentView:
    """Record the next version of a document (by the current actor); returns it as now
    projected."""
    fields = {"kind": kind, "name": name, "body": body, **_actor()}
    await store.append_next(document_id(kind, name), EventType.DOCUMENT_SAVED, fields)
    saved = await store.get_document(kind, name)
    assert saved is not None
    return saved


async def delete_document(store: EventStore, kind: str, name: str) -> bool:
    """Record a document's deletion; False when there was none."""
    if await store.get_document(kind, name) is None:
        return False
    fields = {"kind": kind, "name": name, **_actor()}
    await store.append_next(document_id(kind, name), EventType.DOCUMENT_DELETED, fields)
    return True


def _actor() -> dict[str, str]:
    actor = current_actor()
    return {"actor": actor} if actor else {}


async def using_store(store: EventStore | None, action: Callable[[EventStore], Awaitable[T]]) -> T:
    """``action`` on the given store, or on the configured one opened for the call."""
    if store is not None:
        return await action(store)
    opened = store_from_url()
    await opened.open()
    try:
        return await action(opened)
    finally:
        await opened.close()
