"""The agents an orchestrator has heard: what each one's last heartbeat said, and which runs
the store says an agent no longer holds (named in its next heartbeat's answer)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flowbus.broker import protocol as p
from flowbus.engine.clock import now_iso

#: An agent silent this long is forgotten.
FORGET_AFTER = 3600.0


@dataclass
class AgentSeen:
    """An agent as its last heartbeat described it."""

    heartbeat: p.Heartbeat
    last_seen: float
    last_seen_iso: str = field(default_factory=now_iso)


class AgentsSeen:
    """Every agent heard from, and what the leader found out about the runs they list."""

    def __init__(self, lease_seconds: float) -> None:
        self.lease_seconds = lease_seconds
        self.by_name: dict[str, AgentSeen] = {}
        #: (agent, run, attempt) the store says the agent no longer holds: named in its next
        #: heartbeat's answer.
        self.lost: set[tuple[str, str, int]] = set()
        #: Runs being read for that now.
        self.checking: set[str] = set()

    def heard(self, beat: p.Heartbeat, now: float) -> None:
        self.by_name[beat.agent] = AgentSeen(beat, now)

    def served_queues(self) -> list[str]:
        """The queues live agents serve (from their heartbeats)."""
        return [queue for seen in self.by_name.values() for queue in seen.heartbeat.queues]

    def silent(self, now: float) -> set[str]:
        """Agents whose leases ran out: no heartbeat for a whole lease."""
        return {n for n, seen in self.by_name.items() if now - seen.last_seen > self.lease_seconds}

    def forget_silent(self, now: float) -> set[str]:
        """Forget what silent agents will not ask about again; returns them."""
        silent = self.silent(now)
        if silent:
            self.lost.difference_update({lost for lost in self.lost if lost[0] in silent})
        for name in [n for n, seen in self.by_name.items() if now - seen.last_seen > FORGET_AFTER]:
            del self.by_name[name]
        return silent

    def listing(self) -> p.AgentList:
        now = time.monotonic()
        agents = [
            p.AgentInfo(
                name=name,
                queues=seen.heartbeat.queues,
                concurrency=seen.heartbeat.concurrency,
                runs=seen.heartbeat.runs,
                started=seen.heartbeat.started,
                last_heartbeat=seen.last_seen_iso,
                hostname=seen.heartbeat.hostname,
                pid=seen.heartbeat.pid,
                alive=now - seen.last_seen < self.lease_seconds,
                abandoned=seen.heartbeat.abandoned,
            )
            for name, seen in sorted(self.by_name.items())
        ]
        return p.AgentList(agents=agents)


__all__ = ["AgentSeen", "AgentsSeen"]
