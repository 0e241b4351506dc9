"""What a flow run on an agent asks the orchestrator for, instead of reading the store itself:
a block (its secrets decrypted), a variable (read, set, unset), the latest artifact of a key.

``flowbus.agent.documents`` (core NATS request/reply, JSON). Agents hold no store URL and no
secret key: only the orchestrator reads the store and decrypts. A request names the run and
the attempt it holds, and carries ``mac``, an HMAC-SHA256 of ``signed_bytes()`` under the
attempt's key (the one its claim granted, ``broker/fencing.py``): the orchestrator answers only
the holder of the run's open attempt, only with the blocks the run's deployment may load, and
records each block it hands out (``block.read``: which block, which run, which agent).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Literal

import orjson
from pydantic import Field, JsonValue

from flowbus.broker.protocol import _Message

#: ``block``: a block by ``<block type>/<name>``; ``variable``, ``set_variable``,
#: ``unset_variable``: a variable by name; ``artifact``: the latest artifact of a key.
Action = Literal["block", "variable", "set_variable", "unset_variable", "artifact"]
ACTIONS: tuple[str, ...] = ("block", "variable", "set_variable", "unset_variable", "artifact")


class DocumentRequest(_Message):
    """``flowbus.agent.documents``: one read or write for a run the asker holds."""

    run_id: str = Field(min_length=1, max_length=64)
    attempt: int = Field(ge=1)
    action: Action
    name: str = Field(min_length=1, max_length=300)
    #: The value of ``set_variable``.
    value: JsonValue = None
    #: The tags of ``set_variable`` (None: the variable's tags stay as they were).
    tags: list[str] | None = Field(default=None, max_length=100)
    #: HMAC-SHA256 (hex) of ``signed_bytes()`` under the attempt key.
    mac: str = Field(default="", max_length=128)

    def signed_bytes(self) -> bytes:
        """What the MAC covers: every field but the MAC, in one canonical encoding (``tags``
        only when given, so a request from an agent that never sends them signs as before)."""
        fields: list[Any] = [self.run_id, self.attempt, self.action, self.name, self.value]
        if self.tags is not None:
            fields.append(self.tags)
        return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


class DocumentReply(_Message):
    """What was asked for: ``found`` False when there is none (an unset variable, say)."""

    ok: Literal[True] = True
    found: bool
    #: A block: ``{"data": {...}, "secret_fields": [...]}`` (secrets decrypted); a variable:
    #: its value; an artifact: ``ArtifactView`` as a dict; ``unset_variable``: None.
    value: Any = None


def signed(request: DocumentRequest, attempt_key: bytes) -> DocumentRequest:
    """``request`` with its MAC under ``attempt_key`` (the grant's key, from hex)."""
    mac = hmac.new(attempt_key, request.signed_bytes(), hashlib.sha256).hexdigest()
    return request.model_copy(update={"mac": mac})


__all__ = ["ACTIONS", "Action", "DocumentReply", "DocumentRequest", "signed"]
