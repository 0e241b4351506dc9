"""The orchestrator (``Orchestrator``, built in ``daemon.py``) and its parts, one module each;
its decisions are the pure functions of ``flowbus.agents.decisions``."""

from flowbus.agents.orchestrator.daemon import Orchestrator
from flowbus.agents.orchestrator.settings import OrchestratorSettings

__all__ = ["Orchestrator", "OrchestratorSettings"]
