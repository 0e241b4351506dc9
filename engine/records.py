"""Building events on the hot path, and the record the store appends.

The pydantic models in ``events.py`` are the contract: other services validate against them and
``decode_event`` checks everything that enters flowbus. Inside the engine, building a pydantic model
for each of the three events of a task run would cost more than the whole task-run budget, so
events are built here as plain dicts of exactly the same shape and encoded with orjson; a unit
test pins that every builder's output validates against its model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import orjson

from flowbus.engine.clock import canonical, now_iso
from flowbus.engine.ids import new_id
from flowbus.engine.states import State

if TYPE_CHECKING:
    from flowbus.engine.events import StoredEventModel

_JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS
#: The version of the event schema this code writes (``schema_version`` of every event).
SCHEMA_VERSION: Final = 1


@dataclass(slots=True)
class EventRecord:
    """One event ready for the log: its envelope columns and its full JSON-able body."""

    id: str
    stream_id: str
    seq: int
    type: str
    occurred: str
    data: dict[str, Any]
    position: int | None = field(default=None)
    #: The event's validated model, once someone needed it (``typed``); the recorder keeps
    #: the one it validated the event with.
    model: StoredEventModel | None = field(default=None, repr=False, compare=False)

    def body(self) -> bytes:
        return orjson.dumps(self.data, option=_JSON_OPTIONS)

    def typed(self) -> StoredEventModel:
        """The event as its model (``flowbus.engine.events``), validated once and kept:
        typed access for the readers that are not on the engine's hot path."""
        if self.model is None:
            from flowbus.engine.events import parse_event

            self.model = parse_event(self.data)
        return self.model

    @classmethod
    def from_body(cls, body: bytes | str, position: int | None = None) -> EventRecord:
        """A record from event JSON, its timestamps made canonical (see ``clock``)."""
        return cls.from_data(orjson.loads(body), position)

    @classmethod
    def from_data(
        cls,
        data: dict[str, Any],
        position: int | None = None,
        model: StoredEventModel | None = None,
    ) -> EventRecord:
        """A record from an event's parsed JSON (its timestamps made canonical in place), with
        its model when the caller validated it already."""
        data["occurred"] = canonical(data["occurred"])
        state = data.get("state")
        if state is not None:
            state["timestamp"] = canonical(state["timestamp"])
        return cls(
            data["id"],
            data["stream_id"],
            data["seq"],
            data["type"],
            data["occurred"],
            data,
            position,
            model,
        )


def state_dict(state: State) -> dict[str, Any]:
    return {
        "type": state.type,
        "name": state.name,
        "timestamp": state.timestamp_iso,
        "message": state.message,
        "traceback": state.traceback,
    }


def make_record(
    stream_id: str,
    seq: int,
    type_: str,
    fields: dict[str, Any],
    occurred: str | None = None,
    event_id: str | None = None,
) -> EventRecord:
    """Wrap ``fields`` in an event envelope (id, stream, sequence, time, schema version).

    Without ``event_id`` a random id is drawn; a run stream passes its own (see ``ids``).
    """
    if event_id is None:
        event_id = new_id()
    if occurred is None:
        occurred = now_iso()
    data = {
        "schema_version": SCHEMA_VERSION,
        "id": event_id,
        "stream_id": stream_id,
        "seq": seq,
        "occurred": occurred,
        "type": type_,
        **fields,
    }
    return EventRecord(event_id, stream_id, seq, type_, occurred, data)


def json_safe(value: Any, limit: int = 2000) -> Any:
    """Turn a parameter value into JSON: kept as is when JSON can hold it, else a short repr."""
    try:
        orjson.dumps(value, option=_JSON_OPTIONS)
        return value
    except TypeError:
        text = repr(value)
        return text if len(text) <= limit else text[: limit - 3] + "..."


def summarize(value: Any, limit: int = 200) -> str | None:
    """A short human-readable summary of a result for run listings."""
    if value is None:
        return None
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
