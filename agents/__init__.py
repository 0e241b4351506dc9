"""Who runs: the long-lived daemons, each a NATS subscriber.

The daemons are imported on first use (``from flowbus.agents import Agent``): a command that
needs one small module of this package (a CLI command, a decision function) does not load
every daemon with it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowbus.agents.agent import Agent
    from flowbus.agents.agent_settings import AgentSettings
    from flowbus.agents.orchestrator import Orchestrator, OrchestratorSettings
    from flowbus.agents.recorder import Recorder, RecorderSettings

_WHERE = {
    "Agent": "flowbus.agents.agent",
    "AgentSettings": "flowbus.agents.agent_settings",
    "Orchestrator": "flowbus.agents.orchestrator",
    "OrchestratorSettings": "flowbus.agents.orchestrator",
    "Recorder": "flowbus.agents.recorder",
    "RecorderSettings": "flowbus.agents.recorder",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flowbus.agents' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Agent",
    "AgentSettings",
    "Orchestrator",
    "OrchestratorSettings",
    "Recorder",
    "RecorderSettings",
]
