"""Automations: a trigger and actions, defined in YAML or Python, kept in the store.

    name: raw-file-to-etl
    trigger:
      kind: event
      match: {type: file.uploaded, labels: {bucket: raw}}
    actions:
      - kind: run-deployment
        deployment: etl-flow/daily
        parameters: {url: "{{ event.resource }}"}

Events are normalized for matching: a custom event as published (``type``, ``resource``,
``labels``, ``payload``); a flow run's state change as ``type: flow-run.<State name>``
(``flow-run.Failed``), ``resource: <run id>``, labels ``flow``, ``deployment``, ``state_type``,
``run_name``. Patterns take ``*`` wildcards. A template ``"{{ event.labels.bucket }}"`` that is a
whole string keeps the value's type; inside a longer string it is written as text.
"""

from __future__ import annotations

import fnmatch
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from flowbus.engine.schedules import CronSchedule


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _any_matches(value: str, patterns: str | list[str]) -> bool:
    if isinstance(patterns, str):
        return fnmatch.fnmatchcase(value, patterns)
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


class EventPattern(_Model):
    """Which events match: every field given must match (``*`` wildcards; a list: any of its
    patterns). ``related``: for each pattern, one of the event's related resources (Prefect's
    ``match_related``) has every label it names."""

    type: str | list[str] = "*"
    resource: str | list[str] = "*"
    labels: dict[str, str | list[str]] = Field(default_factory=dict)
    related: list[dict[str, str | list[str]]] = Field(default_factory=list)

    def matches_type(self, event_type: str) -> bool:
        return _any_matches(event_type, self.type)

    def matches(self, event: dict[str, Any]) -> bool:
        labels = event.get("labels") or {}
        related = event.get("related") or []
        return (
            self.matches_type(str(event.get("type", "")))
            and _any_matches(str(event.get("resource") or ""), self.resource)
            and all(_any_matches(str(labels.get(k, "")), v) for k, v in self.labels.items())
            and all(
                any(
                    all(_any_matches(str(other.get(k, "")), v) for k, v in wanted.items())
                    for other in related
                    if isinstance(other, dict)
                )
                for wanted in self.related
            )
        )

    def describe(self) -> str:
        """What it expects, in a line (``flowbus automation ls``, absence events)."""
        return self.type if isinstance(self.type, str) else " | ".join(self.type)


class EventTrigger(_Model):
    """Fires when ``threshold`` matching events arrive within ``within`` seconds (1: each)."""

    kind: Literal["event"] = "event"
    match: EventPattern
    threshold: int = Field(default=1, ge=1)
    within: float = Field(default=0, ge=0)
    #: Only once one of these events has been seen (per ``for_each`` group) do the matching
    #: events count (Prefect's ``after``: an order's ``complete`` after its ``created``).
    after: EventPattern | None = None
    #: Count the threshold apart per value of these labels (``resource`` and Prefect's
    #: ``prefect.resource.id`` mean the event's resource): one order's events, one user's.
    for_each: list[str] = Field(default_factory=list)

    def group_of(self, event: dict[str, Any]) -> tuple[str, ...]:
        """The values of ``for_each`` for ``event``: whose count it adds to."""
        labels = event.get("labels") or {}
        return tuple(
            str(event.get("resource") or "")
            if key in ("resource", "prefect.resource.id", "flowbus.resource.id")
            else str(labels.get(key, ""))
            for key in self.for_each
        )


class AbsenceTrigger(_Model):
    """Fires at each ``cron`` occurrence when no matching event arrived in the ``within`` seconds
    before it ("etl-flow/daily did not complete by 07:00": cron ``0 7 * * *``, within 86400,
    match type ``flow-run.Completed``, labels deployment ``etl-flow/daily``)."""

    kind: Literal["absence"] = "absence"
    match: EventPattern
    cron: str
    timezone: str = "UTC"
    within: float = Field(gt=0)

    def schedule(self) -> CronSchedule:
        return CronSchedule(cron=self.cron, timezone=self.timezone)


Trigger = Annotated[EventTrigger | AbsenceTrigger, Field(discriminator="kind")]


class RunDeployment(_Model):
    kind: Literal["run-deployment"] = "run-deployment"
    deployment: str
    parameters: dict[str, JsonValue] = Field(default_factory=dict)


class CancelRun(_Model):
    """Cancel a run: by default the one the event is about."""

    kind: Literal["cancel-run"] = "cancel-run"
    run_id: str = "{{ event.resource }}"


class PauseQueue(_Model):
    kind: Literal["pause-queue", "resume-queue"] = "pause-queue"
    queue: str


class PauseSchedule(_Model):
    kind: Literal["pause-schedule", "resume-schedule"] = "pause-schedule"
    deployment: str
    schedule_id: int | None = None


def _event_body() -> JsonValue:
    return {"event": "{{ event }}"}


class CallWebhook(_Model):
    """POST (or the block's method) ``body`` as JSON to the URL of a webhook block."""

    kind: Literal["webhook"] = "webhook"
    block: str
    body: JsonValue = Field(default_factory=_event_body)


class PublishNats(_Model):
    """Publish ``payload`` on a custom-event subject. Only ``flowbus.custom.*`` subjects: an
    automation acts with the orchestrator's credential, which may publish where a person who
    writes automations may not (runs' events, requests that agents act on)."""

    kind: Literal["publish"] = "publish"
    subject: str = Field(pattern=r"^flowbus\.custom(\.[A-Za-z0-9_-]+)+$")
    payload: JsonValue = Field(default_factory=lambda: "{{ event }}")


Action = Annotated[
    RunDeployment | CancelRun | PauseQueue | PauseSchedule | CallWebhook | PublishNats,
    Field(discriminator="kind"),
]


class Automation(_Model):
    """A trigger and the actions it takes. ``enabled: false`` pauses it."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,99}$")
    description: str | None = None
    enabled: bool = True
    #: Who made it, when not a person: ``deployment/<name>`` for a deployment's triggers
    #: (replaced when the deployment is deployed again with its triggers).
    owner: str | None = None
    trigger: Trigger
    actions: list[Action] = Field(min_length=1)

    async def asave(self, store: Any = None) -> None:
        """Record it (a new version if it exists)."""
        from flowbus.engine.documents import save_document, using_store

        async def write(opened: Any) -> None:
            await save_document(opened, AUTOMATION, self.name, self.model_dump(mode="json"))

        await using_store(store, write)

    def save(self) -> None:
        from flowbus.engine.loops import run_sync

        run_sync(self.asave())


AUTOMATION = "automation"
#: Per automation: how often it fired, and its last firing (kept by the engine).
AUTOMATION_STATUS = "automation_status"
