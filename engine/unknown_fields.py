"""Reading what a newer flowbus wrote: its unknown fields dropped, everything else checked.

A minor version adds fields, never removes or changes one (docs/protocol.md, "Versions"), so a
message from a newer peer is valid here once the fields this version does not know are set
aside. Only ``extra_forbidden`` errors are forgiven: a known field with a wrong value is as
invalid as ever. Validation runs strict first and pays nothing extra when nothing is unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError

T = TypeVar("T")


def without_unknown_fields(data: Any, errors: Sequence[Any]) -> Any | None:
    """``data`` (parsed JSON) with each field ``errors`` name as unknown removed; None when an
    error is of another kind (then the message is invalid whatever its version)."""
    if not errors or any(error["type"] != "extra_forbidden" for error in errors):
        return None
    for error in errors:
        _remove(data, list(error["loc"]))
    return data


def _remove(data: Any, loc: list[Any]) -> None:
    here = data
    for key in loc[:-1]:
        if (isinstance(here, dict) and key in here) or (
            isinstance(here, list) and isinstance(key, int) and key < len(here)
        ):
            here = here[key]
        # else: a tagged union's tag (``flow_run.created``), which names no field: stay here
    if isinstance(here, dict):
        here.pop(loc[-1], None)


def validate_tolerant(validate_json: Callable[[bytes | str], T], data: bytes | str) -> T:
    """``validate_json(data)``, forgiving fields this version does not know."""
    try:
        return validate_json(data)
    except ValidationError as exc:
        errors = exc.errors()
        if not errors or any(error["type"] != "extra_forbidden" for error in errors):
            raise  # invalid whatever its version (bad JSON included): no second parse
        return validate_json(orjson.dumps(without_unknown_fields(orjson.loads(data), errors)))


__all__ = ["validate_tolerant", "without_unknown_fields"]
