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


def _unknown_only(errors: Sequence[Any]) -> bool:
    return bool(errors) and all(error["type"] == "extra_forbidden" for error in errors)


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
        if not _unknown_only(errors):
            raise  # invalid whatever its version (bad JSON included): no second parse
        known = orjson.loads(data)
        for error in errors:
            _remove(known, list(error["loc"]))
        return validate_json(orjson.dumps(known))


__all__ = ["validate_tolerant"]
