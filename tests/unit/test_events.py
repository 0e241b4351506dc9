"""The event contract: what the engine emits validates against the pydantic models."""

from __future__ import annotations

import pytest

from flowbus import flow, get_run_logger, task
from flowbus.engine.event_types import EventType
from flowbus.engine.events import EVENT_TYPES, DecodeError, decode_event
from flowbus.engine.records import EventRecord
from flowbus.engine.sinks import ListSink, use_sink


@task(retries=1)
def wobbly(attempts: list[int]) -> int:
    attempts.append(1)
    if len(attempts) == 1:
        raise RuntimeError("first try fails")
    return len(attempts)


@flow
def child() -> str:
    return "child"


@flow
def parent() -> int:
    get_run_logger().info("starting")
    child()
    return wobbly([])


def emitted() -> list[EventRecord]:
    sink = ListSink()
    with use_sink(sink):
        parent()
    return sink.records


def test_every_emitted_event_validates_against_its_model() -> None:
    records = emitted()
    kinds = {record.type for record in records}
    assert kinds == {
        "flow_run.created",
        "flow_run.state",
        "task_run.created",
        "task_run.state",
        "log",
    }
    for record in records:
        event = decode_event(record.body())
        assert event.type == record.type
        assert str(event.id) == record.id
        assert str(event.stream_id) == record.stream_id
        assert event.seq == record.seq
        assert event.model_dump(mode="json")["occurred"][:19] == record.occurred[:19]


def test_each_run_has_its_own_gapless_sequence() -> None:
    by_run: dict[str, list[int]] = {}
    for record in emitted():
        by_run.setdefault(record.stream_id, []).append(record.seq)
    assert len(by_run) == 2  # parent and child flow runs
    for seqs in by_run.values():
        assert seqs == list(range(1, len(seqs) + 1))


def test_every_event_type_has_a_versioned_model() -> None:
    names = {value for key, value in vars(EventType).items() if key.isupper()}
    assert len(names) == 15
    assert {model.model_fields["type"].default for model in EVENT_TYPES} == names
    for model in EVENT_TYPES:
        assert model.model_config.get("frozen") is True
        assert model.model_config.get("extra") == "forbid"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"{}",
        b'{"type": "flow_run.teleported", "id": "x"}',
        b'{"schema_version": 2, "type": "log"}',
    ],
)
def test_malformed_or_unknown_events_raise_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_event(payload)


def test_an_extra_field_is_refused() -> None:
    body = emitted()[0].body().replace(b'"type":', b'"smuggled":1,"type":', 1)
    with pytest.raises(DecodeError):
        decode_event(body)
