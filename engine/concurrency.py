"""Tag concurrency limits, as the engine sees them: before each attempt, a task run carrying
tags asks the slot provider of its run for one slot of each limited tag, waits (Pending) until
it has them, and gives them back when the attempt ends.

An agent provides slots shared by every agent (through the orchestrator); ``None`` (a flow run
started by hand) applies no limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Protocol

#: Gives the slots back.
Release = Callable[[], Awaitable[None]]


class SlotProvider(Protocol):
    async def acquire(self, tags: list[str], holder: str, run_id: str) -> Release | None:
        """Wait until ``holder`` holds a slot of each limited tag; None when none is limited."""


slot_provider_var: ContextVar[SlotProvider | None] = ContextVar(
    "flowbus_slot_provider", default=None
)
