"""What ``flowbus.Client`` answers with and raises, over either transport."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowbus.engine.errors import FlowbusError
from flowbus.engine.states import StateType


class ClientError(FlowbusError):
    """The orchestrator refused a request; ``code`` says why (see docs/protocol.md)."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class NoOrchestrator(ClientError):
    """Nothing answers on the orchestrator's subjects: is ``flowbus up`` running?"""


@dataclass(frozen=True)
class SubmittedRun:
    run_id: str
    name: str
    queue: str
    #: False when the idempotency key named a run submitted earlier (this is that run).
    created: bool


@dataclass(frozen=True)
class FinalState:
    """A run's last state, as ``wait`` reports it."""

    run_id: str
    type: StateType
    name: str
    message: str | None
    result: str | None

    @property
    def completed(self) -> bool:
        return self.type is StateType.COMPLETED


__all__ = ["ClientError", "FinalState", "NoOrchestrator", "SubmittedRun"]
