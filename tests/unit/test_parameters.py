"""Flow parameters: validation, coercion, clear errors, JSON schema."""

from __future__ import annotations

from datetime import date

import pytest

from flowbus import ParameterValidationError, flow
from flowbus.engine.sinks import ListSink, use_sink


@flow
def typed(count: int, when: date, ratio: float = 0.5, tags: list[str] | None = None) -> dict:
    return {"count": count, "when": when, "ratio": ratio, "tags": tags}


def test_values_are_coerced_from_the_signature() -> None:
    with use_sink(ListSink()):
        result = typed("3", "2026-01-02", ratio="0.25")
    assert result == {"count": 3, "when": date(2026, 1, 2), "ratio": 0.25, "tags": None}


def test_an_invalid_parameter_names_the_field_and_the_reason() -> None:
    sink = ListSink()
    with use_sink(sink), pytest.raises(ParameterValidationError) as caught:
        typed("many", "2026-01-02")
    text = str(caught.value)
    assert "count" in text
    assert "integer" in text
    assert caught.value.errors[0]["loc"] == ("count",)
    assert sink.records == [], "nothing may be recorded for a run that never started"


def test_a_missing_parameter_is_a_clear_error() -> None:
    with use_sink(ListSink()), pytest.raises(ParameterValidationError, match="when"):
        typed(1)


def test_validation_can_be_turned_off() -> None:
    @flow(validate_parameters=False)
    def loose(count: int) -> object:
        return count

    with use_sink(ListSink()):
        assert loose("not a number") == "not a number"


def test_json_schema_of_the_parameters() -> None:
    schema = typed.parameters_schema()
    assert schema["required"] == ["count", "when"]
    assert schema["properties"]["count"]["type"] == "integer"
    assert schema["properties"]["when"]["format"] == "date"
    assert schema["properties"]["ratio"]["default"] == 0.5


def test_parameters_may_shadow_pydantic_names() -> None:
    @flow
    def odd(json: str, model_config: int = 1) -> str:
        return f"{json}{model_config}"

    with use_sink(ListSink()):
        assert odd("x", model_config="2") == "x2"
    assert set(odd.parameters_schema()["properties"]) == {"json", "model_config"}


class Frame:
    """A type JSON Schema cannot describe (as a DataFrame)."""


@flow
def takes_frame(frame: Frame, n: int = 1) -> int:
    return n


def test_types_json_schema_cannot_describe_are_any_value_in_the_schema() -> None:
    schema = takes_frame.parameters_schema()
    assert "type" not in schema["properties"]["frame"]
    assert schema["properties"]["n"]["type"] == "integer"


def test_arbitrary_types_are_still_checked_by_isinstance() -> None:
    with use_sink(ListSink()):
        assert takes_frame(Frame(), n="2") == 2
    with use_sink(ListSink()), pytest.raises(ParameterValidationError, match="frame"):
        takes_frame("not a frame")


def test_partial_validation_coerces_what_is_given_and_requires_nothing_else() -> None:
    assert typed.parameters.validate_partial({"count": "4"}) == {"count": 4}
    assert typed.parameters.validate_partial({}) == {}


def test_partial_validation_names_unknown_and_invalid_parameters() -> None:
    with pytest.raises(ParameterValidationError) as caught:
        typed.parameters.validate_partial({"count": "many", "colour": "red"})
    text = str(caught.value)
    assert "colour: not a parameter of this flow" in text
    assert "count" in text and "integer" in text
