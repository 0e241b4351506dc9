"""Concurrency slots, as one arbiter keeps them: who holds how many slots of which limits, and
who waits, first come first served. The orchestrator keeps one for every agent; a flow run by
hand keeps one in its process. Pure bookkeeping: no I/O, no clock but the one it is given.

A limit is named by a key: a tag (tag concurrency limits: each task run with the tag holds one
slot) or ``gcl:<name>`` (global concurrency limits: ``concurrency("db", occupy=3)`` holds 3). A
waiter needs its slots of every key at once (all or nothing). A holding is given back when its
holder is done, when its flow run ends, and when its agent stops renewing its lease.

A limit with a slot decay rate (rate limits) is a leaky bucket besides: ``rate_limit`` adds its
slots to the bucket's level, which drains at ``decay`` slots a second; nothing is given back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: How long a given-back holder is remembered (longer than a heartbeat takes to arrive).
FORGET_RELEASED = 120.0
#: The prefix of a global concurrency limit's key.
GLOBAL = "gcl:"
#: Documents of this kind hold a tag's concurrency limit: ``{"limit": 3}`` (``flowbus limit``).
LIMIT = "limit"
#: Documents of this kind hold a global concurrency limit: ``{"limit": 5, "active": true,
#: "slot_decay_per_second": 1.0}`` (``flowbus gcl create``).
GLOBAL_LIMIT = "global-limit"


@dataclass
class Holding:
    holder: str
    tags: tuple[str, ...]
    run_id: str
    agent: str
    #: Slots of each key it holds.
    count: int = 1


@dataclass
class Waiter(Holding):
    #: Where the grant is sent (a NATS subject, or a local waiter's id).
    notify: str = ""
    #: A rate limit: granted slots go to the decaying buckets instead of a holding.
    decay: bool = False


@dataclass
class Bucket:
    """The decaying slots of one rate-limited key: ``level`` at monotonic time ``at``."""

    level: float = 0.0
    at: float = field(default_factory=time.monotonic)

    def drained(self, rate: float, now: float) -> float:
        return max(0.0, self.level - rate * (now - self.at))


class SlotTable:
    """Holdings, buckets and waiters of slots; ``limits`` map a key to its number of slots,
    ``decay`` (set by the owner) a rate-limited key to the slots it frees a second."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.holdings: dict[str, Holding] = {}
        self.waiters: list[Waiter] = []
        self.buckets: dict[str, Bucket] = {}
        self.decay: dict[str, float] = {}
        self.clock = clock
        #: Nothing is granted before this time: a table that starts afresh does not know the
        #: holdings granted before it until their holders report them (``adopt``).
        self.settled_at = 0.0
        #: Whether ``grant`` has run since the table settled (the waiters queued while it
        #: settled are served by that pass).
        self._swept = True
        #: Holders given back lately (monotonic time): a heartbeat sent just before a release
        #: must not make them count again.
        self._released: dict[str, float] = {}

    def adopt(self, holding: Holding) -> bool:
        """Count a holding an agent reports that this table does not know (it was granted
        before the orchestrator restarted); False when it was given back lately."""
        now = self.clock()
        self._released = {h: t for h, t in self._released.items() if now - t < FORGET_RELEASED}
        if holding.holder in self.holdings or holding.holder in self._released:
            return False
        self.holdings[holding.holder] = holding
        return True

    def active(self, tag: str) -> int:
        return sum(h.count for h in self.holdings.values() if tag in h.tags)

    def level(self, key: str) -> float:
        """Slots of ``key`` taken by rate limits that have not drained yet."""
        bucket = self.buckets.get(key)
        return bucket.drained(self.decay.get(key, 0.0), self.clock()) if bucket else 0.0

    def _fits(self, waiter: Waiter, limits: Mapping[str, int]) -> bool:
        return all(
            self.active(tag) + self.level(tag) + waiter.count <= limits.get(tag, 0) + 1e-9
            for tag in waiter.tags
        )

    def _take(self, waiter: Waiter) -> None:
        if not waiter.decay:
            self.holdings[waiter.holder] = Holding(
                waiter.holder, waiter.tags, waiter.run_id, waiter.agent, waiter.count
            )
            return
        now = self.clock()
        for key in waiter.tags:
            level = self.level(key)
            self.buckets[key] = Bucket(level + waiter.count, now)

    def settle_until(self, moment: float) -> None:
        """Grant nothing before ``moment`` (the clock's time); then serve the waiters."""
        self.settled_at = moment
        self._swept = False

    def settling(self) -> float:
        """Seconds until the table may grant (0: now); see ``settled_at``."""
        return max(0.0, self.settled_at - self.clock())

    def acquire(self, waiter: Waiter, limits: Mapping[str, int]) -> bool:
        """Grant ``waiter`` its slots now (True), or queue it (False). Asking again with the
        same holder is safe: a holder holds, a waiter keeps its place (with a new inbox)."""
        if waiter.holder in self.holdings:
            return True
        queued = next((w for w in self.waiters if w.holder == waiter.holder), None)
        if queued is not None:
            queued.notify = waiter.notify
            return False
        # Nobody overtakes a waiter that wants one of the same keys.
        blocked = any(set(w.tags) & set(waiter.tags) for w in self.waiters)
        if not blocked and not self.settling() and self._fits(waiter, limits):
            self._take(waiter)
            return True
        self.waiters.append(waiter)
        return False

    def release(self, holder: str, limits: Mapping[str, int]) -> list[Waiter]:
        """Give back a holder's slots (or drop it from the waiters); returns the waiters now
        granted, to be told."""
        self.holdings.pop(holder, None)
        self._released[holder] = self.clock()
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
        blocks those behind it that want one of its keys."""
        if self.settling():
            return []
        self._swept = True
        granted: list[Waiter] = []
        blocked: set[str] = set()
        remaining: list[Waiter] = []
        for waiter in self.waiters:
            if not (blocked & set(waiter.tags)) and self._fits(waiter, limits):
                self._take(waiter)
                granted.append(waiter)
            else:
                blocked.update(waiter.tags)
                remaining.append(waiter)
        self.waiters = remaining
        return granted

    def next_drain(self, limits: Mapping[str, int]) -> float | None:
        """Seconds until ``grant`` could serve the first waiter: when the table has settled, or
        when a rate-limited bucket has drained enough (None: nothing to wait for)."""
        if self.waiters and (self.settling() or not self._swept):
            return self.settling()  # 0 when it has just settled: grant at once
        soonest: float | None = None
        for waiter in self.waiters:
            for key in waiter.tags:
                rate = self.decay.get(key, 0.0)
                if rate <= 0:
                    continue
                over = self.active(key) + self.level(key) + waiter.count - limits.get(key, 0)
                wait = max(over / rate, 0.01)
                soonest = wait if soonest is None else min(soonest, wait)
        return soonest
