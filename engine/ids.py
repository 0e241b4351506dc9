"""Identifiers: UUIDv7 (time-ordered), so ids sort by creation and index well in the store."""

from __future__ import annotations

import random
import time

# Seeded from the OS; Python reseeds ``random`` in a forked child, so children never repeat.
_bits = random.Random(random.SystemRandom().getrandbits(128)).getrandbits


def new_id() -> str:
    """A new UUIDv7 as its canonical string (48-bit ms time, version 7, 74 random bits)."""
    rand = _bits(74)
    value = (
        (time.time_ns() // 1_000_000) << 80
        | 0x7 << 76
        | (rand >> 62) << 64
        | 0x2 << 62
        | (rand & 0x3FFF_FFFF_FFFF_FFFF)
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def stream_id_prefix() -> str:
    """The fixed head of a stream's event ids; ``event_id(prefix, seq)`` completes one.

    An event id is a UUIDv8: 48 bits of creation time (ms) and 26 random bits name the stream,
    the last 48 bits are the event's sequence number in it. Unique because the head is, and made
    with one string format instead of a random draw per event.
    """
    rand = _bits(26)
    value = (time.time_ns() // 1_000_000) << 32 | 0x8 << 28 | (rand >> 14) << 16 | 0x2 << 14
    value |= rand & 0x3FFF
    h = f"{value:020x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-"


def event_id(prefix: str, seq: int) -> str:
    return f"{prefix}{seq:012x}"
