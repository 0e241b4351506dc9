"""Tag concurrency slots, as the orchestrator keeps them: who holds which tags' slots, and who
waits, first come first served.

A task run carrying limited tags needs one slot of every such tag at once (all or nothing).
A slot is a lease of its holder's agent: it is given back when the task run ends, when its flow
run ends (whatever became of the task run), and when the agent stops renewing its lease. A
waiter is granted its slots the moment they are free: the orchestrator pushes the grant to the
waiter's inbox, nobody polls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: How long a given-back holder is remembered (longer than a heartbeat takes to arrive).
FORGET_RELEASED = 120.0


@dataclass
class Holding:
    holder: str
    tags: tuple[str, ...]
    run_id: str
    agent: str


@dataclass
class Waiter(Holding):
    #: The subject the grant is published to.
    notify: str


class SlotTable:
    """Holdings and waiters of tag slots; ``limits`` maps a tag to its number of slots."""

    def __init__(self) -> None:
        self.holdings: dict[str, Holding] = {}
        self.waiters: list[Waiter] = []
        #: Holders given back lately (monotonic time): a heartbeat sent just before a release
        #: must not make them count again.
        self._released: dict[str, float] = {}

    def adopt(self, holding: Holding) -> bool:
        """Count a holding an agent reports that this table does not know (it was granted
        before the orchestrator restarted); False when it was given back lately."""
        now = time.monotonic()
        self._released = {h: t for h, t in self._released.items() if now - t < FORGET_RELEASED}
        if holding.holder in self.holdings or holding.holder in self._released:
            return False
        self.holdings[holding.holder] = holding
        return True

    def active(self, tag: str) -> int:
        return sum(1 for h in self.holdings.values() if tag in h.tags)

    def _fits(self, tags: tuple[str, ...], limits: Mapping[str, int]) -> bool:
        return all(self.active(tag) < limits.get(tag, 0) for tag in tags)

    def acquire(self, waiter: Waiter, limits: Mapping[str, int]) -> bool:
        """Grant ``waiter`` its slots now (True), or queue it (False). Asking again with the
        same holder is safe: a holder holds, a waiter keeps its place (with a new inbox)."""
        if waiter.holder in self.holdings:
            return True
        queued = next((w for w in self.waiters if w.holder == waiter.holder), None)
        if queued is not None:
            queued.notify = waiter.notify
            return False
        # Nobody overtakes a waiter that wants one of the same tags.
        blocked = any(set(w.tags) & set(waiter.tags) for w in self.waiters)
        if not blocked and self._fits(waiter.tags, limits):
            self.holdings[waiter.holder] = Holding(
                waiter.holder, waiter.tags, waiter.run_id, waiter.agent
            )
            return True
        self.waiters.append(waiter)
        return False

    def release(self, holder: str, limits: Mapping[str, int]) -> list[Waiter]:
        """Give back a holder's slots (or drop it from the waiters); returns the waiters now
        granted, to be told."""
        self.holdings.pop(holder, None)
        self._released[holder] = time.monotonic()
        self.waiters = [w for w in self.waiters if w.holder != holder]
        return self.grant(limits)

    def release_where(
        self, gone: Callable[[Holding], bool], limits: Mapping[str, int]
    ) -> tuple[list[Holding], list[Waiter]]:
        """Give back the slots of every holding ``gone`` says is gone (a dead agent's, a finished
        run's) and drop such waiters; returns (reclaimed holdings, waiters now granted)."""
        reclaimed = [h for h in self.holdings.values() if gone(h)]
        for holding in reclaimed:
            del self.holdings[holding.holder]
        self.waiters = [w for w in self.waiters if not gone(w)]
        return reclaimed, self.grant(limits)

    def grant(self, limits: Mapping[str, int]) -> list[Waiter]:
        """Grant waiters, in order, while their slots are free; a waiter that does not fit
        blocks those behind it that want one of its tags."""
        granted: list[Waiter] = []
        blocked: set[str] = set()
        remaining: list[Waiter] = []
        for waiter in self.waiters:
            if not (blocked & set(waiter.tags)) and self._fits(waiter.tags, limits):
                self.holdings[waiter.holder] = Holding(
                    waiter.holder, waiter.tags, waiter.run_id, waiter.agent
                )
                granted.append(waiter)
            else:
                blocked.update(waiter.tags)
                remaining.append(waiter)
        self.waiters = remaining
        return granted
