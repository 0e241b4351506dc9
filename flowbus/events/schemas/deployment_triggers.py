"""Prefect's ``prefect.events.schemas.deployment_triggers``: ``DeploymentEventTrigger`` (see
``flowbus.engine.deployment_triggers``)."""

from flowbus.engine.deployment_triggers import DeploymentEventTrigger

#: Prefect's names for the same trigger.
DeploymentTrigger = DeploymentEventTrigger

__all__ = ["DeploymentEventTrigger", "DeploymentTrigger"]
