"""Who runs: the long-lived daemons, each a NATS subscriber."""

from flowbus.agents.agent import Agent, AgentSettings
from flowbus.agents.orchestrator import Orchestrator, OrchestratorSettings
from flowbus.agents.recorder import Recorder, RecorderSettings

__all__ = [
    "Agent",
    "AgentSettings",
    "Orchestrator",
    "OrchestratorSettings",
    "Recorder",
    "RecorderSettings",
]
