"""Friendly generated run names (``brave-otter``), easier to say than a UUID."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from flowbus.engine.errors import UsageError

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


def render_name(template: str | Callable[[], str], parameters: dict[str, Any], owner: str) -> str:
    """A run name from a template (``"daily-{day}"``, given the parameters) or a callable."""
    if callable(template):
        return str(template())
    try:
        return template.format(**parameters)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(f"run name template {template!r} of {owner}: {exc!r}") from exc
