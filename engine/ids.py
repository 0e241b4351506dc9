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
