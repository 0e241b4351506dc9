"""What an automation does when it fires: start a deployment's run, cancel a run, pause or
resume a queue or a schedule, call a webhook block, publish a custom event. Requests go to the
orchestrator as any client's do (a run it starts carries the automation and the event in its
``triggered_by``, and an idempotency key of both, so a firing repeated makes no second run).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from datetime import UTC, datetime
from typing import Any

import structlog
from nats.aio.client import Client

from flowbus.broker import protocol as p
from flowbus.broker import subjects, versions
from flowbus.engine.automations import (
    Automation,
    CallWebhook,
    CancelRun,
    PauseQueue,
    PauseSchedule,
    PublishNats,
    RunDeployment,
)
from flowbus.engine.blocks import Webhook
from flowbus.engine.deployments import set_schedules_active
from flowbus.engine.store import EventStore
from flowbus.engine.templates import render

log = structlog.get_logger("flowbus.automations")

#: The label a publish action's custom event carries: the automation that published it.
PUBLISHED_BY = "flowbus.automation"


class AutomationActions:
    """Takes automations' actions, as the orchestrator's client on ``client``."""

    def __init__(self, client: Client, store: EventStore) -> None:
        self.client = client
        self.store = store

    async def take(
        self, automation: Automation, action: Any, event: dict[str, Any], context: dict[str, Any]
    ) -> dict[str, Any]:
        """Carry out one of the automation's actions for ``event``: what it did, or why not
        (one that fails does not stop the others)."""
        try:
            detail = await self._perform(automation, action, event, context)
            return {"ok": True, **detail}
        except Exception as exc:  # one failed action does not stop the others
            log.warning("automation action failed", automation=automation.name,
                        action=action.kind, error=repr(exc))  # fmt: skip
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    async def _perform(
        self, automation: Automation, action: Any, event: dict[str, Any], context: dict[str, Any]
    ) -> dict[str, Any]:
        if isinstance(action, RunDeployment):
            request = p.SubmitRequest(
                deployment=action.deployment,
                parameters=render(action.parameters, context),
                idempotency_key=f"automation/{automation.name}/{event['id']}",
                tags=["automation"],
                triggered_by={
                    "automation": automation.name,
                    "event_id": str(event["id"]),
                    "event_type": str(event["type"]),
                },
            )
            reply = await self._request(subjects.SUBMIT, request.dump(), p.SubmitReply)
            return {"run_id": reply.run_id, "run_name": reply.name}
        if isinstance(action, CancelRun):
            run_id = str(render(action.run_id, context))
            reply = await self._request(
                subjects.CANCEL, p.CancelRequest(run_id=run_id).dump(), p.CancelReply
            )
            return {"run_id": run_id, "state": reply.state}
        if isinstance(action, PauseQueue):
            update = p.QueueUpdate(name=action.queue, paused=action.kind == "pause-queue")
            await self._request(subjects.QUEUE_UPDATE, update.dump(), p.QueueInfo)
            return {"queue": action.queue}
        if isinstance(action, PauseSchedule):
            active = action.kind == "resume-schedule"
            await set_schedules_active(self.store, action.deployment, action.schedule_id, active)
            return {"deployment": action.deployment}
        if isinstance(action, CallWebhook):
            return await self._call_webhook(action, context)
        if isinstance(action, PublishNats):
            return await self._publish(automation, action, event, context)
        raise TypeError(f"unknown action {action!r}")

    async def _publish(
        self, automation: Automation, action: PublishNats, event: dict[str, Any],
        context: dict[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        """A custom event on the action's ``flowbus.custom.*`` subject: the rendered payload
        (a dict as it is, anything else as ``{"value": ...}``), the triggering event's resource,
        and who published it. Other automations may trigger on it; the same one does not."""
        payload = render(action.payload, context)
        event_type = action.subject.removeprefix(subjects.custom_subject(""))
        custom = p.CustomEvent(
            id=f"{automation.name}/{event['id']}/{event_type}",
            type=event_type,
            occurred=datetime.now(UTC),
            resource=event.get("resource"),
            labels={PUBLISHED_BY: automation.name},
            payload=payload if isinstance(payload, dict) else {"value": payload},
        )
        await self.client.jetstream().publish(
            action.subject, custom.dump(), headers=versions.with_version({"Nats-Msg-Id": custom.id})
        )
        return {"subject": action.subject, "event_id": custom.id}

    async def _request(self, subject: str, data: bytes, model: type[Any]) -> Any:
        answer = await self.client.request(
            subject, data, timeout=10, headers=versions.with_version()
        )
        reply = p.decode_reply(model, answer.data)
        if isinstance(reply, p.ErrorReply):
            raise RuntimeError(reply.error.message)
        return reply

    async def _call_webhook(self, action: CallWebhook, context: dict[str, Any]) -> dict[str, Any]:
        hook = await Webhook.aload(action.block, self.store)
        body = json.dumps(render(action.body, context)).encode()
        headers = {"Content-Type": "application/json", **hook.headers}
        if hook.token is not None:
            headers["Authorization"] = f"Bearer {hook.token.get_secret_value()}"
        request = urllib.request.Request(hook.url, data=body, headers=headers, method=hook.method)

        def send() -> int:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)

        status = await asyncio.to_thread(send)
        return {"status": status, "url": hook.url}


__all__ = ["PUBLISHED_BY", "AutomationActions"]
