"""The one rule table that decides every state transition, for flow runs and task runs alike.

Pure data and one pure function: no I/O, no clock. Every other part of flowbus (the in-process
engine, the store's recorder, the orchestrator) asks ``decide`` rather than writing its own ifs.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowbus.engine.states import StateType

S = StateType

#: For each current type (None: the run has no state yet), the types it may move to.
ALLOWED: dict[StateType | None, frozenset[StateType]] = {
    None: frozenset({S.SCHEDULED, S.PENDING, S.RUNNING}),
    # Scheduled -> Scheduled renames a waiting run (Late); -> Running is a retry (Retrying).
    S.SCHEDULED: frozenset(
        {S.SCHEDULED, S.PENDING, S.RUNNING, S.CANCELLING, S.CANCELLED, S.FAILED, S.CRASHED}
    ),
    # Pending -> Completed is a cache hit; -> Failed an entrypoint or upstream failure;
    # -> Scheduled hands a claimed run back to its queue.
    S.PENDING: frozenset(
        {S.SCHEDULED, S.RUNNING, S.COMPLETED, S.FAILED, S.CANCELLING, S.CANCELLED, S.CRASHED}
    ),
    S.RUNNING: frozenset(
        {S.SCHEDULED, S.PAUSED, S.CANCELLING, S.COMPLETED, S.FAILED, S.CANCELLED, S.CRASHED}
    ),
    S.PAUSED: frozenset(
        {S.SCHEDULED, S.PENDING, S.RUNNING, S.CANCELLING, S.CANCELLED, S.FAILED, S.CRASHED}
    ),
    # A run being cancelled may only end; finishing normally is no longer an option.
    S.CANCELLING: frozenset({S.CANCELLED, S.FAILED, S.CRASHED}),
    S.COMPLETED: frozenset(),
    # A failed or crashed run may be queued again (AwaitingRetry) by a retry or a re-run.
    S.FAILED: frozenset({S.SCHEDULED}),
    # A cancelled one only by a retry asked for (``flowbus runs retry``).
    S.CANCELLED: frozenset({S.SCHEDULED}),
    S.CRASHED: frozenset({S.SCHEDULED}),
}


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one proposed transition."""

    accepted: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.accepted


ACCEPT = Decision(True)


def decide(current: StateType | None, proposed: StateType) -> Decision:
    """Decide whether a run in ``current`` may move to ``proposed``."""
    if proposed in ALLOWED[current]:
        return ACCEPT
    if current is None:
        return Decision(False, f"a new run cannot start in {proposed.value}")
    if current.is_terminal:
        return Decision(False, f"run is already {current.value}; it cannot become {proposed.value}")
    return Decision(False, f"{current.value} -> {proposed.value} is not a legal transition")
