"""Where a run's events go. The engine only knows the ``EventSink`` protocol; it is handed one.

Local runs use ``StoreSink`` (the local store, group-committed); agents hand the engine a sink that
publishes to NATS; unit tests use ``ListSink``.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from flowbus.engine import settings
from flowbus.engine.loops import store_loop
from flowbus.engine.records import EventRecord

if TYPE_CHECKING:
    from flowbus.engine.store import EventStore

# Engine internals log through the standard library: structlog (and the store with its SQLite
# driver) load on first use, which keeps ``import flowbus`` fast.
log = logging.getLogger("flowbus.engine")


class EventSink(Protocol):
    """Receives a run's events in order; ``flush`` returns once they are durable."""

    def emit(self, record: EventRecord) -> None: ...

    def flush(self, timeout: float | None = None) -> None: ...


class ListSink:
    """Keeps events in a list: for unit tests of engine logic, and for a task's call on a
    remote worker (``engine/remote_calls.py``), whose events travel back with its outcome."""

    def __init__(self) -> None:
        self.records: list[EventRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: EventRecord) -> None:
        with self._lock:
            self.records.append(record)

    def flush(self, timeout: float | None = None) -> None:
        return None


class StoreSink:
    """Records events in an event store, through a group-commit writer on the background loop."""

    def __init__(self, store: EventStore) -> None:
        from flowbus.engine.store.writer import GroupCommitWriter

        self.store = store
        # Opened on the store loop's daemon thread, so aiosqlite's worker thread (created there)
        # is a daemon too: a store left open never keeps the process from exiting, and the
        # atexit hook below flushes it first.
        store_loop.call(store.open())
        self._writer = GroupCommitWriter(store, store_loop.loop)

    def emit(self, record: EventRecord) -> None:
        self._writer.submit(record)

    def flush(self, timeout: float | None = None) -> None:
        self._writer.flush(timeout)

    def close(self) -> None:
        self.flush()
        store_loop.call(self.store.close())


#: Makes the sink of top-level runs outside ``use_sink`` when it returns one (the server of a
#: profile: ``flowbus.remote.reporting.remote_sink``); None from it means the local store.
_default_factory: Callable[[], EventSink | None] | None = None


def set_default_sink_factory(factory: Callable[[], EventSink | None] | None) -> None:
    """Where runs by hand record when no ``use_sink`` applies (see ``current_sink``)."""
    global _default_factory
    _default_factory = factory


#: Wraps the sink of each new top-level run outside ``use_sink`` (tracing, ``engine.tracing``).
_wrapper: Callable[[EventSink], EventSink] | None = None


def set_sink_wrapper(wrapper: Callable[[EventSink], EventSink] | None) -> None:
    global _wrapper
    _wrapper = wrapper


_sinks: dict[str, StoreSink] = {}
_sinks_lock = threading.Lock()
_override: contextvars.ContextVar[EventSink | None] = contextvars.ContextVar(
    "flowbus_sink", default=None
)


def current_sink() -> EventSink:
    """The sink for a new top-level run: the one set by ``use_sink``, else a profile's server
    (``set_default_sink_factory``), else the local store."""
    override = _override.get()
    if override is not None:
        return override
    sink = _default_sink()
    return _wrapper(sink) if _wrapper is not None else sink


def _default_sink() -> EventSink:
    if _default_factory is not None:
        remote = _default_factory()
        if remote is not None:
            return remote
    url = settings.store_url()
    sink = _sinks.get(url)
    if sink is None:
        with _sinks_lock:
            sink = _sinks.get(url)
            if sink is None:
                from flowbus.engine.store import store_from_url

                sink = _sinks[url] = StoreSink(store_from_url(url))
    return sink


@contextmanager
def use_sink(sink: EventSink) -> Iterator[EventSink]:
    """Send the events of runs started inside the block to ``sink``."""
    token = _override.set(sink)
    try:
        yield sink
    finally:
        _override.reset(token)


def close_store_sinks() -> None:
    """Flush and close every local store sink (at exit, and between tests)."""
    with _sinks_lock:
        sinks = list(_sinks.values())
        _sinks.clear()
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:  # at exit there is nobody left to raise to
            log.error("could not flush events of %s at exit: %s", sink.store.url, exc)


atexit.register(close_store_sinks)
