"""Friendly generated run names (``brave-otter``), easier to say than a UUID."""

from __future__ import annotations

import random

_ADJECTIVES = (
    "amber", "able", "bold", "brave", "brisk", "calm", "clever", "cosmic", "crimson", "curious",
    "daring", "eager", "fancy", "gentle", "golden", "happy", "humble", "jolly", "keen", "lively",
    "lucky", "mellow", "merry", "nimble", "noble", "quick", "quiet", "rapid", "silver", "smart",
    "snappy", "steady", "sunny", "swift", "tidy", "vivid", "witty",
)  # fmt: skip
_ANIMALS = (
    "badger", "bat", "bear", "beaver", "bison", "crane", "crow", "deer", "dolphin", "eagle",
    "falcon", "ferret", "finch", "fox", "gecko", "heron", "ibis", "jaguar", "koala", "lemur",
    "lynx", "marmot", "moose", "newt", "otter", "owl", "panda", "parrot", "puffin", "quail",
    "rabbit", "raven", "seal", "stork", "tapir", "tiger", "toad", "walrus", "whale", "yak",
)  # fmt: skip


def generate_run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_ANIMALS)}"
