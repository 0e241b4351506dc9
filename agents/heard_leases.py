"""What agents' heartbeats said of the runs they hold: each heartbeat gives the runs it lists a
full lease period from when it was heard.

What a heartbeat said is kept apart from the runs' copies, so a copy read or learned later (a
run read again from the store, another orchestrator's claim followed) keeps the lease that
heartbeat gave, when it names the same holder and attempt.
"""

from __future__ import annotations

from collections.abc import Iterable

from flowbus.agents.run_entry import RunEntry


class HeardLeases:
    """The last heartbeat that listed each run: (agent, attempt, when, monotonic)."""

    def __init__(self, lease_seconds: float) -> None:
        self.lease_seconds = lease_seconds
        self._heard: dict[str, tuple[str, int, float]] = {}

    def heard(self, run_id: str, agent: str, attempt: int, at: float) -> None:
        """A heartbeat of ``agent`` listed attempt ``attempt`` of the run at ``at``."""
        self._heard[run_id] = (agent, attempt, at)

    def forget(self, run_id: str) -> None:
        """The run ended: no heartbeat speaks for it any more."""
        self._heard.pop(run_id, None)

    def apply(self, entry: RunEntry) -> None:
        """Extend the entry's lease to what the last heartbeat listing its attempt gave."""
        heard = self._heard.get(entry.run_id)
        if heard is not None and entry.agent == heard[0] and entry.attempt == heard[1]:
            entry.extend_lease(heard[2] + self.lease_seconds)

    def renew(self, entry: RunEntry | None, now: float) -> None:
        """A heartbeat from the run's holder: its lease lasts a full period from ``now``."""
        if entry is not None:
            entry.extend_lease(now + self.lease_seconds)

    def renew_all(self, entries: Iterable[RunEntry], now: float) -> None:
        """A full lease from ``now`` for every run (a starting orchestrator has heard no
        heartbeat yet, and must not take the time it spent starting out of the leases)."""
        until = now + self.lease_seconds
        for entry in entries:
            entry.extend_lease(until)

    def purge(self, now: float, older_than: float) -> None:
        """Forget what heartbeats said of runs none has listed for ``older_than`` seconds."""
        for run_id in [run for run, (_, _, at) in self._heard.items() if now - at > older_than]:
            del self._heard[run_id]


__all__ = ["HeardLeases"]
