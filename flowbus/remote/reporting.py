"""Where a run by hand reports: the active profile's server (``sink.HttpEventSink``), or the
local store when there is no profile. ``import flowbus`` installs ``remote_sink`` as the
engine's default sink factory; the sink (and httpx) load only when a profile is active."""

from __future__ import annotations

from flowbus.engine.sinks import EventSink
from flowbus.remote.profiles import active_api

#: The sink of each server runs by hand report to (one per process).
_remote_sinks: dict[str, EventSink] = {}


def remote_sink() -> EventSink | None:
    """The sink of a run by hand: the active profile's server, or None to record to the local
    store (no profile)."""
    api = active_api()
    if api is None:
        return None
    sink = _remote_sinks.get(api.url)
    if sink is None:
        import atexit

        from flowbus.remote.sink import HttpEventSink

        made = HttpEventSink(api)
        atexit.register(made.close)
        sink = _remote_sinks[api.url] = made
    return sink


__all__ = ["remote_sink"]
