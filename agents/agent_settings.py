"""An agent's settings: its queues, concurrency, name and isolation, and the timings read from
the environment (``agents/settings.py``)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, Literal

from flowbus.agents.settings import AgentEnv, default_of, load
from flowbus.broker import subjects
from flowbus.engine.errors import UsageError

Isolation = Literal["thread", "process"]


def default_agent_name() -> str:
    """``<host>-<pid>``; under an agent credential of ``flowbus auth`` (which may listen on
    its own name's subjects only) ``<credential's agent>.<host>-<pid>``."""
    instance = f"{socket.gethostname().replace('.', '-')}-{os.getpid()}"
    creds = os.environ.get("FLOWBUS_NATS_CREDS")
    if creds:
        from pathlib import Path

        from flowbus.broker.nats_auth import agent_user

        user = agent_user(Path(creds))
        if user is not None:
            return f"{user}.{instance}"
    return instance


@dataclass(frozen=True)
class AgentSettings:
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 10
    name: str = field(default_factory=default_agent_name)
    isolation: Isolation = "thread"
    heartbeat_seconds: float = default_of(AgentEnv, "heartbeat_seconds")
    grace_seconds: float = default_of(AgentEnv, "agent_grace_seconds")
    #: A cancelled run still blocked this long after the cancel is recorded Cancelled and its
    #: thread abandoned (``FLOWBUS_CANCEL_DEADLINE_SECONDS``).
    cancel_deadline_seconds: float = default_of(AgentEnv, "cancel_deadline_seconds")
    #: How often requests that ring no bell (redeliveries, a freed queue limit) are looked for.
    tick_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.name in subjects.RESERVED_AGENT_NAMES or not self.name:
            raise UsageError(
                f"agent name {self.name!r}: not empty, and none of "
                f"{', '.join(sorted(subjects.RESERVED_AGENT_NAMES))} (orchestrator subjects)"
            )

    @classmethod
    def from_env(cls, **given: Any) -> AgentSettings:
        """Settings from arguments, then ``$FLOWBUS_HEARTBEAT_SECONDS`` and
        ``$FLOWBUS_AGENT_GRACE_SECONDS`` (validated: a bad value is a ``SettingsError``)."""
        env = load(AgentEnv)
        values: dict[str, Any] = {
            "heartbeat_seconds": env.heartbeat_seconds,
            "grace_seconds": env.agent_grace_seconds,
            "cancel_deadline_seconds": env.cancel_deadline_seconds,
            "tick_seconds": env.agent_tick_seconds,
        }
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(**values)


__all__ = ["AgentSettings", "Isolation", "default_agent_name"]
