"""The type names of flowbus's events: one spelling each, checked by the type checker.

Events are written and read as their models in ``events.py``; this module is the light half
(no pydantic) that the engine's hot path, the store's projections and the daemons share to
tell one type from another.
"""

from __future__ import annotations

from typing import Final


class EventType:
    """Every stored event's ``type``."""

    FLOW_RUN_CREATED: Final = "flow_run.created"
    FLOW_RUN_STATE: Final = "flow_run.state"
    TASK_RUN_CREATED: Final = "task_run.created"
    TASK_RUN_STATE: Final = "task_run.state"
    LOG: Final = "log"
    ARTIFACT_CREATED: Final = "artifact.created"
    ARTIFACT_UPDATED: Final = "artifact.updated"
    DEPLOYMENT_SAVED: Final = "deployment.saved"
    DOCUMENT_SAVED: Final = "document.saved"
    DOCUMENT_DELETED: Final = "document.deleted"
    AUTOMATION_FIRED: Final = "automation.fired"
    AUTOMATION_ACTION: Final = "automation.action"
    CUSTOM_EVENT: Final = "custom.event"
    BLOCK_READ: Final = "block.read"
    AUDIT_ENTRY: Final = "audit.entry"


#: The events of a run's own stream: what a run records about itself (by hand or on an agent).
RUN_EVENT_TYPES: Final = frozenset(
    {
        EventType.FLOW_RUN_CREATED,
        EventType.FLOW_RUN_STATE,
        EventType.TASK_RUN_CREATED,
        EventType.TASK_RUN_STATE,
        EventType.LOG,
        EventType.ARTIFACT_CREATED,
        EventType.ARTIFACT_UPDATED,
    }
)
#: State changes of a flow run (its creation is its first state).
FLOW_RUN_STATES: Final = frozenset({EventType.FLOW_RUN_CREATED, EventType.FLOW_RUN_STATE})
#: State changes of a task run.
TASK_RUN_STATES: Final = frozenset({EventType.TASK_RUN_CREATED, EventType.TASK_RUN_STATE})
__all__ = ["FLOW_RUN_STATES", "RUN_EVENT_TYPES", "TASK_RUN_STATES", "EventType"]
