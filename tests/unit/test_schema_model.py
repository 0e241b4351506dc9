"""Validating parameters from a deployment's JSON schema gives the flow signature's verdicts."""

from __future__ import annotations

import datetime
import enum

import pytest
from pydantic import BaseModel, ValidationError

from flowbus import flow
from flowbus.engine.schema_model import model_from_schema


class Color(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Window(BaseModel):
    start: datetime.date
    days: int = 1


@flow
def rich_signature(
    n: int,
    name: str = "x",
    ratio: float = 0.5,
    when: datetime.date | None = None,
    color: Color = Color.RED,
    window: Window | None = None,
    tags: list[str] = [],  # noqa: B006 - a default as users write it
    weights: dict[str, int] = {},  # noqa: B006
    anything=None,  # type: ignore[no-untyped-def]
) -> None:
    return None


Model = model_from_schema(rich_signature.parameters_schema())


def test_values_are_coerced_and_defaults_filled_as_the_signature_would() -> None:
    given = {"n": "3", "when": "2026-11-24", "window": {"start": "2026-11-01"}, "tags": ["a"]}
    from_schema = Model.model_validate(given).model_dump(mode="json")
    from_signature = rich_signature.parameters.validate(given)
    assert from_schema == {
        "n": 3, "name": "x", "ratio": 0.5, "when": "2026-11-24", "color": "red",
        "window": {"start": "2026-11-01", "days": 1}, "tags": ["a"], "weights": {},
        "anything": None,
    }  # fmt: skip
    assert from_signature["n"] == from_schema["n"]
    assert from_signature["when"] == datetime.date(2026, 11, 24)


@pytest.mark.parametrize(
    ("given", "where", "message"),
    [
        ({}, "n", "Field required"),
        ({"n": "many"}, "n", "valid integer"),
        ({"n": 1, "color": "green"}, "color", "'red' or 'blue'"),
        ({"n": 1, "when": "yesterday"}, "when", "date"),
        ({"n": 1, "window": {"days": 2}}, "window.start", "Field required"),
        ({"n": 1, "weights": {"a": "b"}}, "weights.a", "valid integer"),
        ({"n": 1, "surprise": True}, "surprise", "Extra inputs are not permitted"),
    ],
)
def test_invalid_values_get_pydantics_message_naming_the_field(
    given: dict[str, object], where: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Model.model_validate(given)
    text = str(caught.value)
    assert where.split(".")[0] in text and message in text


def test_constructs_it_does_not_know_accept_anything() -> None:
    schema = {"type": "object", "properties": {"x": {"not": {"type": "string"}}}}
    assert model_from_schema(schema).model_validate({"x": "y"}).model_dump() == {"x": "y"}


def test_a_recursive_reference_does_not_loop() -> None:
    schema = {
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
        "type": "object",
        "properties": {"head": {"$ref": "#/$defs/Node"}},
    }
    value = model_from_schema(schema).model_validate({"head": {"next": {"next": None}}})
    assert value.model_dump()["head"]["next"] == {"next": None}
