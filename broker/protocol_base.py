"""The wire protocol's foundations: the base of every message, decoding with a size limit, and
the error reply every service answers with when it refuses (docs/protocol.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from flowbus.engine.errors import FlowbusError
from flowbus.engine.unknown_fields import validate_tolerant

#: A request bigger than this is refused without being parsed (parameters belong in storage,
#: not in messages; nats-server's own limit is 1 MiB).
MAX_REQUEST_BYTES = 256 * 1024


class ProtocolError(FlowbusError, ValueError):
    """A message that is not what its subject expects."""


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def dump(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


M = TypeVar("M", bound=_Message)


def decode(model: type[M], data: bytes, tolerant: bool = False) -> M:
    """Parse ``data`` as ``model``; anything wrong raises ``ProtocolError`` saying what.
    ``tolerant``: fields ``model`` does not know are set aside (a newer sender's additions,
    ``broker/versions.py``); every field it knows is checked as ever."""
    if len(data) > MAX_REQUEST_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes is over {MAX_REQUEST_BYTES}")
    try:
        if tolerant:
            return validate_tolerant(model.model_validate_json, data)
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise ProtocolError(f"not a valid {model.__name__}: {exc}") from exc


class ErrorDetail(_Message):
    code: str
    message: str
    details: Any = None


class ErrorReply(_Message):
    ok: Literal[False] = False
    error: ErrorDetail


def decode_reply(model: type[M], data: bytes) -> M | ErrorReply:
    """A service's reply: ``model``, or the ``ErrorReply`` it answered instead. Replies come
    from the orchestrators: what a newer one adds is set aside (``broker/versions.py``)."""
    if data.startswith(b'{"ok":false'):
        return decode(ErrorReply, data, tolerant=True)
    return decode(model, data, tolerant=True)


def error(code: str, message: str, details: Any = None) -> ErrorReply:
    """A refusal: ``{"ok": false, "error": {"code", "message", "details"}}``."""
    return ErrorReply(error=ErrorDetail(code=code, message=message, details=details))


def error_reply(code: str, message: str, details: Any = None) -> bytes:
    """``error`` as the bytes of a reply."""
    return error(code, message, details).dump()


def validation_details(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What a refusal's ``details`` say of invalid input (pydantic's ``exc.errors()``): each
    error's location, message and type, without the input itself."""
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]
