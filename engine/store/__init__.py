"""The event-sourced store: an append-only event log and the projections derived from it."""

from __future__ import annotations

from flowbus.engine import settings
from flowbus.engine.errors import StoreError
from flowbus.engine.store.base import EventStore
from flowbus.engine.store.memory import MemoryEventStore
from flowbus.engine.store.sqlite import SqliteEventStore
from flowbus.engine.store.views import (
    AuditView,
    DeploymentView,
    DocumentView,
    FlowRunView,
    LogLine,
    RunCount,
    RunFilter,
    StoredEvent,
    TaskRunView,
)

__all__ = [
    "AuditView",
    "DeploymentView",
    "DocumentView",
    "EventStore",
    "FlowRunView",
    "LogLine",
    "MemoryEventStore",
    "RunCount",
    "RunFilter",
    "SqliteEventStore",
    "StoredEvent",
    "TaskRunView",
    "store_from_url",
]


def store_from_url(url: str | None = None) -> EventStore:
    """The store a URL names: ``sqlite:///path``, a plain file path, ``postgresql://...``
    (needs the ``postgres`` extra), or ``memory://``.

    Without a URL, ``$FLOWBUS_STORE_URL`` or the SQLite file under ``$FLOWBUS_HOME``.
    """
    url = url or settings.store_url()
    if url.startswith("memory://"):
        return MemoryEventStore()
    if url.startswith("sqlite:///"):
        return SqliteEventStore(url.removeprefix("sqlite:///"), settings.sqlite_synchronous())
    if "://" not in url:
        return SqliteEventStore(url, settings.sqlite_synchronous())
    if url.startswith(("postgresql://", "postgres://")):
        from flowbus.engine.store.postgres import PostgresEventStore

        return PostgresEventStore(url)
    scheme = url.split("://", 1)[0]
    raise StoreError(
        f"unsupported store URL scheme {scheme!r} (use sqlite:///PATH or postgresql://...)"
    )
