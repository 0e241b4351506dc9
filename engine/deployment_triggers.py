"""Deployment triggers, as Prefect 3 writes them: an event that matches starts a run of the
deployment, with parameters templated from the event.

    from flowbus.events import DeploymentEventTrigger

    my_flow.deploy("on-upload", triggers=[DeploymentEventTrigger(
        expect={"file.uploaded"},
        match={"prefect.resource.id": "s3://raw/*"},
        parameters={"path": "{{ event.resource.id }}"},
    )])

or under ``triggers:`` of a deployment in prefect.yaml (``type: event`` and the same keys).
Each is kept as an automation of the deployment's (``<deployment>-trigger-<n>``, owned by it):
a deploy through prefect.yaml or ``flow.deploy`` replaces the deployment's triggers with the
ones it gives, as Prefect does. The automation engine fires them like any other automation.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowbus.engine.automations import (
    AUTOMATION,
    Automation,
    EventPattern,
    EventTrigger,
    RunDeployment,
)
from flowbus.engine.errors import UsageError

_RESOURCE_ID_KEYS = ("prefect.resource.id", "flowbus.resource.id")
#: A deployment's trigger automations are owned by ``deployment/<name>``.
OWNER_PREFIX = "deployment/"


def _patterns(value: str | list[str] | set[str]) -> str | list[str]:
    return value if isinstance(value, str) else sorted(value)


class DeploymentEventTrigger(BaseModel):
    """A trigger that runs its deployment when ``threshold`` events of one of the ``expect``
    names, about a resource matching ``match`` (and related resources matching
    ``match_related``), arrive within ``within`` — counted apart per value of the ``for_each``
    labels, and, with ``after``, only once one of those events has been seen."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["event"] = "event"
    name: str | None = None
    description: str | None = None
    enabled: bool = True
    expect: set[str] = Field(default_factory=set)
    after: set[str] = Field(default_factory=set)
    match: dict[str, str | list[str]] = Field(default_factory=dict)
    match_related: dict[str, str | list[str]] | list[dict[str, str | list[str]]] = Field(
        default_factory=dict
    )
    for_each: set[str] = Field(default_factory=set)
    posture: Literal["Reactive", "Proactive"] = "Reactive"
    threshold: int = Field(default=1, ge=1)
    within: timedelta = timedelta(0)
    parameters: dict[str, Any] | None = None
    job_variables: dict[str, Any] | None = None

    @field_validator("posture")
    @classmethod
    def _reactive_only(cls, posture: str) -> str:
        if posture == "Proactive":
            raise ValueError(
                "Proactive deployment triggers (fire when events do not come) are not "
                "supported: use an automation with an absence trigger and a cron "
                "(flowbus automation create)"
            )
        return posture

    def pattern(self, types: set[str] | None = None) -> EventPattern:
        """The events it counts (``types``: these names instead of ``expect``)."""
        wanted = self.expect if types is None else types
        resource = next((self.match[k] for k in _RESOURCE_ID_KEYS if k in self.match), "*")
        related = self.match_related
        if isinstance(related, dict):
            related = [related] if related else []
        return EventPattern(
            type=_patterns(wanted) if wanted else "*",
            resource=resource,
            labels={k: v for k, v in self.match.items() if k not in _RESOURCE_ID_KEYS},
            related=related,
        )

    def automation(self, deployment: str, number: int) -> Automation:
        """The automation that carries it out for ``deployment``."""
        return Automation(
            name=trigger_name(deployment, number),
            description=self.description or self.name or f"a trigger of {deployment}",
            enabled=self.enabled,
            owner=OWNER_PREFIX + deployment,
            trigger=EventTrigger(
                match=self.pattern(),
                after=self.pattern(self.after) if self.after else None,
                threshold=self.threshold,
                within=self.within.total_seconds(),
                for_each=sorted(self.for_each),
            ),
            actions=[RunDeployment(deployment=deployment, parameters=self.parameters or {})],
        )


def trigger_name(deployment: str, number: int) -> str:
    """``etl-flow/daily``'s first trigger: ``etl-flow-daily-trigger-1``."""
    slug = re.sub(r"[^a-z0-9]+", "-", deployment.lower()).strip("-")[:80] or "deployment"
    return f"{slug}-trigger-{number}"


def read_triggers(given: list[Any] | None) -> list[DeploymentEventTrigger]:
    """Triggers as ``flow.deploy`` or a YAML file gives them (models or mappings); anything
    else is a clear error."""
    made = []
    for number, item in enumerate(given or [], start=1):
        if isinstance(item, DeploymentEventTrigger):
            made.append(item)
            continue
        if not isinstance(item, dict):
            raise UsageError(f"trigger {number}: expected a DeploymentEventTrigger or a mapping, "
                             f"got {type(item).__name__}")  # fmt: skip
        kind = item.get("type", "event")
        if kind != "event":
            raise UsageError(f"trigger {number}: type {kind!r} is not supported (only 'event': "
                             "compound and sequence triggers are not)")  # fmt: skip
        try:
            made.append(DeploymentEventTrigger.model_validate(item))
        except ValueError as exc:
            raise UsageError(f"trigger {number}: {exc}") from exc
    return made


async def replace_triggers(
    store: Any, deployment: str, triggers: list[DeploymentEventTrigger]
) -> tuple[list[str], list[str]]:
    """Make the deployment's trigger automations these (saved in order; the deployment's
    others removed). Returns the names of the automations it now has, and of those removed."""
    from flowbus.engine.documents import delete_document, save_document

    wanted = [trigger.automation(deployment, n) for n, trigger in enumerate(triggers, start=1)]
    names = {automation.name for automation in wanted}
    removed = []
    for document in await store.list_documents(AUTOMATION):
        owner = document.body.get("owner") if isinstance(document.body, dict) else None
        if owner == OWNER_PREFIX + deployment and document.name not in names:
            await delete_document(store, AUTOMATION, document.name)
            removed.append(document.name)
    for automation in wanted:
        await save_document(store, AUTOMATION, automation.name, automation.model_dump(mode="json"))
    return [automation.name for automation in wanted], removed


__all__ = [
    "DeploymentEventTrigger",
    "read_triggers",
    "replace_triggers",
    "trigger_name",
]
