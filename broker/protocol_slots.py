"""The wire protocol's concurrency slots (docs/protocol.md, "Concurrency slots"): a task run's
or a process's request for slots of tag and global limits, its grant, release and renewal, and
the limits as the orchestrators list them. Re-exported by ``broker/protocol.py``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from flowbus.broker.protocol_base import _Message

#: The ``agent`` of slots a process takes by hand (a flow run by hand, through a server's API):
#: ``hand:<process>``.
HAND = "hand:"


class HeldSlots(_Message):
    holder: str
    run_id: str
    tags: list[str]
    occupy: int = 1


class SlotRequest(_Message):
    """``flowbus.slot.acquire``: a task run wants one slot of each of its tags, or code in a
    run wants ``occupy`` slots of global limits (keys ``gcl:<name>``)."""

    #: The task run asking (asking again with the same holder is safe).
    holder: str
    run_id: str
    agent: str
    tags: list[str] = Field(max_length=100)
    #: Where the grant is published if the slots are not free now.
    notify: str
    #: Slots of each key.
    occupy: int = Field(default=1, ge=1, le=1_000_000)
    #: A rate limit: the slots decay at the limit's rate and are never given back.
    decay: bool = False


class SlotReply(_Message):
    ok: Literal[True] = True
    #: True: the slots are held now. False: wait for a ``SlotGrant`` on ``notify``.
    granted: bool
    #: The tags that have a limit (the others need no slot).
    limited: list[str]
    #: Keys whose limit is below the slots asked for (never granted: nothing was queued).
    too_small: list[str] = Field(default_factory=list)
    #: Keys asked for as a rate limit that have no slot decay (nothing was queued).
    no_decay: list[str] = Field(default_factory=list)


class SlotGrant(_Message):
    """Published to a waiter's ``notify`` subject when its slots are its own."""

    holder: str


class SlotRelease(_Message):
    """``flowbus.slot.release``: a task run gives its slots back (or stops waiting)."""

    holder: str


class SlotRenew(_Message):
    """``flowbus.slot.renew``: a process that holds slots by hand (``hand:<id>``: a flow run by
    hand, through a server's API) is alive and holds these. A process silent for the lease
    (``FLOWBUS_LEASE_SECONDS``) loses its slots, as a silent agent does. (Protocol 1.1.)"""

    process: str = Field(max_length=200)
    holdings: list[HeldSlots] = Field(default_factory=list, max_length=10_000)


class LimitInfo(_Message):
    tag: str
    limit: int
    active: int
    waiting: int
    #: Who holds the slots: task run, flow run, agent.
    holders: list[dict[str, str]]


class LimitList(_Message):
    ok: Literal[True] = True
    limits: list[LimitInfo]
