"""Concurrency slots, as the engine sees them.

Tag limits: before each attempt, a task run carrying tags asks the slot provider of its run for
one slot of each limited tag, waits (Pending) until it has them, and gives them back when the
attempt ends. An agent provides slots shared by every agent (through the orchestrator); a flow
run started by hand takes them from its server's orchestrators when a profile names a server
(``set_default_slot_factory``: ``flowbus/remote/slots.py``), else applies no tag limit.

Global limits (``flowbus.concurrency``): ``concurrency("db", occupy=2)`` holds 2 slots of the
limit named ``db`` while its block runs, ``rate_limit("api")`` takes slots that drain at the
limit's decay rate. On an agent, and by hand with a server, they are shared by every process;
by hand without a server they are kept by the process itself, from the limits in the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from flowbus.engine.errors import ConcurrencySlotAcquisitionError, FlowbusError
from flowbus.engine.ids import new_id
from flowbus.engine.slot_table import GLOBAL

#: Gives the slots back.
Release = Callable[[], Coroutine[Any, Any, None]]


class AcquireConcurrencySlotTimeoutError(ConcurrencySlotAcquisitionError, TimeoutError):
    """The slots were not free within ``timeout_seconds``."""


@dataclass
class NamedSlots:
    """One request for slots of global limits: how many of each, decaying or not, how long to
    wait, and whether a missing limit is an error."""

    names: list[str]
    occupy: int = 1
    decay: bool = False
    strict: bool = False
    timeout_seconds: float | None = None
    holder: str = field(default_factory=new_id)
    run_id: str = ""
    started: float = field(default_factory=time.monotonic)

    def deadline(self) -> float | None:
        return None if self.timeout_seconds is None else self.started + self.timeout_seconds

    def check(self, reply: Any) -> None:
        """Refuse what can never be granted (``reply`` has ``limited``, ``too_small``,
        ``no_decay``), before anything waits."""
        missing = [n for n in self.names if GLOBAL + n not in reply.limited]
        if self.strict and missing:
            raise ConcurrencySlotAcquisitionError(
                f"no active concurrency limit named {', '.join(missing)} (strict=True)"
            )
        if reply.too_small:
            names = ", ".join(k.removeprefix(GLOBAL) for k in reply.too_small)
            raise ConcurrencySlotAcquisitionError(
                f"cannot occupy {self.occupy} slots: the limit of {names} is lower"
            )
        if reply.no_decay:
            names = ", ".join(k.removeprefix(GLOBAL) for k in reply.no_decay)
            raise ConcurrencySlotAcquisitionError(
                f"rate_limit() needs a limit with a slot decay: {names} has none "
                "(flowbus gcl create NAME --limit N --slot-decay-per-second R)"
            )

    def timed_out(self) -> FlowbusError:
        return AcquireConcurrencySlotTimeoutError(
            f"no slots of {', '.join(self.names)} within {self.timeout_seconds} s"
        )


class SlotProvider(Protocol):
    async def acquire(self, tags: list[str], holder: str, run_id: str) -> Release | None:
        """Wait until ``holder`` holds a slot of each limited tag; None when none is limited."""

    async def acquire_named(self, names: list[str], request: NamedSlots) -> Release | None:
        """Wait until the request holds its slots of the named global limits; None when there
        is nothing to give back (no limit, or a rate limit)."""


slot_provider_var: ContextVar[SlotProvider | None] = ContextVar(
    "flowbus_slot_provider", default=None
)

#: Where slots come from when no run set a provider (a run by hand, code outside any run):
#: ``import flowbus`` installs the active profile's server (``flowbus.remote.slots``); None
#: from it means no server.
_default_factory: Callable[[], SlotProvider | None] | None = None


def set_default_slot_factory(factory: Callable[[], SlotProvider | None] | None) -> None:
    global _default_factory
    _default_factory = factory


def current_slots() -> SlotProvider | None:
    """The run's slot provider, else the server's (a profile), else None."""
    provider = slot_provider_var.get()
    if provider is None and _default_factory is not None:
        provider = _default_factory()
    return provider


def slots_by_hand() -> SlotProvider:
    """A run by hand's provider, chosen once when it starts: the server's when a profile names
    one, else the process's own (global limits counted here, tags not limited)."""
    from flowbus.engine.local_slots import local_slots

    return current_slots() or local_slots()
