"""The orchestrator's settings: the ``FLOWBUS_*`` variables of ``OrchestratorEnv`` (where every
default is written, once), as one frozen value its parts are given."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from flowbus.agents.settings import OrchestratorEnv, default_of, load


def _default(name: str) -> Any:
    return default_of(OrchestratorEnv, name)


@dataclass(frozen=True)
class OrchestratorSettings:
    """What the orchestrator's parts are tuned by (defaults: ``OrchestratorEnv``'s)."""

    #: A run whose agent has not renewed its lease for this long is Crashed.
    lease_seconds: float = _default("lease_seconds")
    #: How often the janitor looks for expired leases, unpublished and late runs.
    janitor_interval: float = _default("janitor_interval")
    #: A queued run not claimed this long after it was queued becomes Late.
    late_after: float = _default("late_after_seconds")
    #: JetStream redelivers a run request its agent neither acked nor kept alive after this.
    run_ack_wait: float = _default("run_ack_wait")
    #: How often the leader checks that each published request is still in its queue.
    queue_audit_interval: float = _default("queue_audit_interval")
    #: Whether the scheduler runs in this process (``FLOWBUS_SCHEDULER=off`` leaves it to a
    #: ``flowbus scheduler start`` elsewhere).
    scheduler: bool = _default("scheduler")
    #: Whether the automation engine runs in this process (``FLOWBUS_AUTOMATIONS=off``: not).
    automations: bool = _default("automations")
    #: How often agents renew their leases: a new leader grants no slot for two.
    heartbeat_seconds: float = _default("heartbeat_seconds")
    #: How long the leader's lease lasts without renewal (a dead leader's successor waits it).
    leader_lease_seconds: float = _default("leader_lease_seconds")

    @classmethod
    def from_env(cls) -> OrchestratorSettings:
        """Settings from the ``FLOWBUS_*`` variables of ``OrchestratorEnv`` (validated: a bad
        value is a ``SettingsError`` naming the variable)."""
        env = load(OrchestratorEnv)
        names = {"late_after": "late_after_seconds"}
        return cls(**{f.name: getattr(env, names.get(f.name, f.name)) for f in fields(cls)})


__all__ = ["OrchestratorSettings"]
