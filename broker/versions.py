"""The wire's version: what a message's sender speaks, and what a reader makes of it.

Every request and event a flowbus process sends carries ``Flowbus-Protocol: MAJOR.MINOR``
(absent: 1.0, every release before the header). Within a major version a minor one only adds
(optional fields with defaults, new subjects, new event types used only once every reader has
them), so the reader's rule is short (docs/protocol.md, "Versions"):

- the same major, a minor up to this one: checked strictly (an unknown field is a mistake);
- the same major, a newer minor: fields this version does not know are set aside, the rest is
  checked strictly (``engine/unknown_fields.py``);
- another major: refused, saying both versions (an upgrade across majors stops the cluster).

Replies and queue messages come from the orchestrators, so their readers set unknown fields
aside whatever the version: an orchestrator upgraded before its agents may add to its answers.
"""

from __future__ import annotations

from collections.abc import Mapping

HEADER = "Flowbus-Protocol"
#: This code's wire version. 1.1: the header itself, readers that set aside what a newer minor
#: adds, and ``flowbus.slot.renew`` (slots held by a process by hand).
MAJOR, MINOR = 1, 1
VERSION = f"{MAJOR}.{MINOR}"
HEADERS: Mapping[str, str] = {HEADER: VERSION}


def of(headers: Mapping[str, str] | None) -> tuple[int, int] | None:
    """The sender's (major, minor): (1, 0) without the header, None when it is not a version."""
    raw = (headers or {}).get(HEADER)
    if raw is None:
        return (1, 0)
    major, dot, minor = raw.strip().partition(".")
    if not (major.isdigit() and dot and minor.isdigit()):
        return None
    return int(major), int(minor)


def reading(headers: Mapping[str, str] | None) -> tuple[str | None, bool]:
    """How to read a message of this sender: (why it cannot be read here, or None; whether
    its unknown fields are set aside, a newer minor's). Every event's path: a sender of this
    very version is answered without parsing."""
    if headers is not None and headers.get(HEADER) == VERSION:
        return None, False
    sender = of(headers)
    if sender is None:
        return f"{HEADER} {(headers or {}).get(HEADER)!r} is not MAJOR.MINOR", False
    if sender[0] != MAJOR:
        return (f"sent in protocol {sender[0]}.{sender[1]}; this flowbus speaks {VERSION}: "
                f"upgrade every process to the same major version"), False  # fmt: skip
    return None, sender[1] > MINOR


def problem(headers: Mapping[str, str] | None) -> str | None:
    """Why a message of this sender cannot be read here, or None."""
    return reading(headers)[0]


def newer(headers: Mapping[str, str] | None) -> bool:
    """Whether the sender speaks a newer minor of this major (its unknown fields are set aside)."""
    return reading(headers)[1]


def with_version(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """``headers`` plus this code's version."""
    return {**(headers or {}), **HEADERS}


__all__ = ["HEADER", "HEADERS", "MAJOR", "MINOR", "VERSION", "newer", "of", "problem",
           "reading", "with_version"]  # fmt: skip
