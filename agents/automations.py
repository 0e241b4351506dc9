"""The automation engine: follows events, fires the automations they trigger, records why.

It reads two JetStream streams through durable consumers, so nothing published while it was
down is missed: custom events (``flowbus.custom.<type>``) and flow run state changes. Each
firing is recorded in the store as the stream ``automation.fired`` / ``automation.action``
events of (automation, triggering event): its first event is written before any action, so an
event redelivered after a restart finds it and fires nothing twice. A run an automation starts
carries the automation and the event in its ``triggered_by``.

Absence triggers are checked at their cron occurrences against the last time a matching event was
seen (kept in the ``flowbus_automations`` KV bucket, so a restart does not forget it).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from flowbus.agents.automation_actions import PUBLISHED_BY, AutomationActions
from flowbus.agents.automation_feeds import AutomationFeeds
from flowbus.agents.lifecycle import Daemon, Loop
from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.broker.streams import ensure_streams
from flowbus.engine.automations import (
    AUTOMATION,
    AUTOMATION_STATUS,
    AbsenceTrigger,
    Automation,
)
from flowbus.engine.clock import canonical
from flowbus.engine.documents import save_document
from flowbus.engine.errors import SequenceError
from flowbus.engine.event_types import EventType
from flowbus.engine.events import FlowRunStateChanged, decode_event
from flowbus.engine.records import make_record
from flowbus.engine.store import EventStore
from flowbus.engine.templates import event_context
from flowbus.engine.trigger_counts import TriggerCounts, wants_run_states, wants_type

log = structlog.get_logger("flowbus.automations")

#: Firing streams are UUIDv5 of "<automation>/<event id>" in this namespace.
NAMESPACE = uuid.UUID("4d0c5e3b-8a61-4f0e-9d27-6175746f6d61")
AUTOMATIONS_CACHE_SECONDS = 1.0


def _stored_at(message: Msg) -> datetime | None:
    """When JetStream stored the message (from its ack subject), if it says."""
    try:
        return message.metadata.timestamp
    except Exception:  # not a JetStream message (a test's), or an unreadable reply subject
        return None


def firing_id(automation: str, event_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{automation}/{event_id}"))


class AutomationEngine(Daemon):
    """Fire automations on the events they match until ``stop()``."""

    name = "automations"

    def __init__(self, client: Client, store: EventStore) -> None:
        super().__init__()
        self.client = client
        self.store = store
        self._kv: KeyValue | None = None
        self._cached: tuple[float, list[Automation]] = (0.0, [])
        #: What each event trigger has seen (``engine/trigger_counts.py``).
        self.trigger_counts = TriggerCounts()
        #: When each enabled automation was last saved (its events start no earlier).
        self._saved: dict[str, datetime] = {}
        self._changes: Any = None
        self.feeds: AutomationFeeds | None = None
        self.actions = AutomationActions(client, store)
        self.fired = 0

    def subscriptions(self) -> list[Any]:
        """Its subscriptions, for a step-down to end (the durable consumers stay, with where
        the engine was)."""
        changes, self._changes = self._changes, None
        found = self.feeds.subscriptions() if self.feeds is not None else []
        return found + ([changes] if changes is not None else [])

    async def open(self) -> None:
        """Subscribe now: from here on no event is missed (the first time, the durable
        consumers start at now; after that, where they were left; runs' state changes only
        while an automation may want them: ``automation_feeds.py``)."""
        js = self.client.jetstream()
        await ensure_streams(js)
        self._kv = await js.key_value(subjects.AUTOMATIONS_BUCKET)
        self._changes = await self.client.subscribe(subjects.AUTOMATIONS_CHANGED, cb=self._reload)
        self.feeds = AutomationFeeds(js, self._handle)
        await self.feeds.open()
        await self._follow_runs()
        log.info("automations started")

    def loops(self) -> dict[str, Loop]:
        # The subscriptions end with the connection (or a step-down: ``subscriptions``);
        # unsubscribing here would delete the durable consumers, and where the engine was.
        return {"absences": self._watch_absences, "run states": self._keep_following_runs}

    async def _keep_following_runs(self) -> None:
        """Look every second whether runs' state changes are wanted (an automation saved or
        removed whose announcement did not reach this engine) and their consumer still there."""
        while not self.stopping:
            await self.until_stopped(1.0)
            try:
                await self._follow_runs()
            except Exception as exc:  # NATS or the store failed: look again in a second
                log.warning("could not follow runs' state changes", error=repr(exc))

    async def _reload(self, message: Msg) -> None:
        """Read the automations again now, then answer: an event published after the change
        was announced meets the new definitions."""
        self._cached = (0.0, [])
        try:
            count = len(await self.automations())
            await self._follow_runs()
        except Exception as exc:  # the store or NATS failed: the next look does it again
            log.warning("could not read automations", error=repr(exc))
            count = -1
        if message.reply:
            await message.respond(orjson.dumps({"ok": True, "enabled": count}))

    async def automations(self) -> list[Automation]:
        """Enabled automations, read from the store at most once a second (at once after a
        change announced on ``flowbus.api.automations.changed``)."""
        read_at, cached = self._cached
        if time.monotonic() - read_at > AUTOMATIONS_CACHE_SECONDS:
            cached = []
            for document in await self.store.list_documents(AUTOMATION):
                try:
                    automation = Automation.model_validate(document.body)
                except ValueError as exc:  # saved by a newer version, say: skip, say why
                    log.warning("automation unreadable", name=document.name, error=str(exc))
                    continue
                if automation.enabled:
                    cached.append(automation)
                    self._saved[automation.name] = datetime.fromisoformat(document.updated)
            self._cached = (time.monotonic(), cached)
        return cached

    async def _follow_runs(self) -> None:
        """Follow runs' state changes while an enabled automation could want them, from the
        earliest save of those that do."""
        if self.feeds is None or self.stopping:  # a step-down ended the subscriptions
            return
        saved = [self._saved[a.name] for a in await self.automations() if wants_run_states(a)]
        await self.feeds.follow_runs(min(saved) if saved else None)

    # --- following events ------------------------------------------------------------------

    async def _handle(self, message: Msg) -> None:
        try:
            event = await self._normalize(message)
        except Exception as exc:  # a malformed event: nothing can match it; say so, move on
            log.warning("event not understood", subject=message.subject, error=repr(exc))
            await message.term()
            return
        try:
            if event is not None:
                await self.consider(event, _stored_at(message))
        except Exception:  # the store or NATS failed: JetStream delivers it again later
            log.exception("automation evaluation failed", event_id=event and event.get("id"))
            await message.nak(delay=2)
            return
        await message.ack()

    async def _normalize(self, message: Msg) -> dict[str, Any] | None:
        """The event as automations see it (see ``flowbus.engine.automations``)."""
        if message.subject.startswith("flowbus.custom."):
            custom = p.CustomEvent.model_validate_json(message.data)
            return custom.model_dump(mode="json")
        # Every state change of every run comes here: it is read only when there are
        # automations, and the run only when one of them could want this kind of event.
        automations = await self.automations()
        if not automations:
            return None
        event = decode_event(message.data, tolerant=True)  # recorded: checked
        if not isinstance(event, FlowRunStateChanged):
            return None
        state = event.state
        event_type = f"flow-run.{state.name}"
        if not any(wants_type(a, event_type) for a in automations):
            return None
        run_id = str(event.stream_id)
        run = await self.store.get_flow_run(run_id)
        return {
            "id": str(event.id),
            "type": event_type,
            "occurred": canonical(event.occurred),
            "resource": run_id,
            "labels": {
                "flow": run.flow_name if run else "",
                "deployment": (run.deployment or "") if run else "",
                "run_name": run.name if run else "",
                "state_type": state.type.value,
            },
            "payload": {"message": state.message},
        }

    async def consider(self, event: dict[str, Any], stored_at: datetime | None = None) -> int:
        """Fire every automation ``event`` triggers; returns how many fired. An automation
        saved after the event was stored (``stored_at``) did not exist for it: a consumer
        made again from a little earlier delivers such events."""
        fired = 0
        for automation in await self.automations():
            saved = self._saved.get(automation.name)
            if stored_at is not None and saved is not None and stored_at < saved:
                continue
            trigger = automation.trigger
            if not self.trigger_counts.counts(automation, event):
                continue
            if not trigger.match.matches(event):
                continue
            if event.get("labels", {}).get(PUBLISHED_BY) == automation.name:
                continue  # its own publish action: an automation does not trigger itself
            if isinstance(trigger, AbsenceTrigger):
                await self._seen(automation.name)
                continue
            if self.trigger_counts.fires(automation.name, trigger, event, time.monotonic()):
                fired += await self.fire(automation, event)
        return fired

    # --- absence ---------------------------------------------------------------------------

    async def _seen(self, name: str) -> None:
        assert self._kv is not None
        await self._kv.put(name, datetime.now(UTC).isoformat().encode())

    async def _last_seen(self, name: str) -> datetime | None:
        assert self._kv is not None
        try:
            entry = await self._kv.get(name)
        except KeyNotFoundError:
            return None
        return datetime.fromisoformat(entry.value.decode()) if entry.value else None

    async def _watch_absences(self) -> None:
        """At each occurrence of an absence trigger, fire if nothing matched within its window."""
        checked: dict[str, datetime] = {}
        while not self.stopping:
            now = datetime.now(UTC)
            for automation in await self.automations():
                trigger = automation.trigger
                if not isinstance(trigger, AbsenceTrigger):
                    continue
                since = checked.setdefault(automation.name, now)
                due = list(trigger.schedule().occurrences(since, now))
                checked[automation.name] = now
                for occurrence in due[-1:]:  # after downtime, the latest only
                    await self._check_absence(automation, trigger, occurrence)
            await self.until_stopped(1.0)

    async def _check_absence(
        self, automation: Automation, trigger: AbsenceTrigger, occurrence: datetime
    ) -> None:
        seen = await self._last_seen(automation.name)
        if seen is not None and occurrence - seen <= timedelta(seconds=trigger.within):
            return
        event = {
            "id": f"absence/{occurrence.isoformat()}",
            "type": "automation.absence",
            "occurred": occurrence.isoformat(),
            "resource": automation.name,
            "labels": {"expected": trigger.match.describe()},
            "payload": {
                "last_seen": seen.isoformat() if seen else None,
                "within": trigger.within,
            },
        }
        await self.fire(automation, event)

    # --- firing ----------------------------------------------------------------------------

    async def fire(self, automation: Automation, event: dict[str, Any]) -> int:
        """Take the automation's actions for ``event`` once: 1 if it fired now, 0 if it had."""
        stream = firing_id(automation.name, str(event["id"]))
        fired = make_record(stream, 1, EventType.AUTOMATION_FIRED,
                            {"automation": automation.name, "event": event})  # fmt: skip
        try:
            await self.store.append([fired])
        except SequenceError:  # its first event exists: fired before (a redelivery)
            return 0
        log.info("automation fired", automation=automation.name, event_id=event["id"])
        context = {"event": event_context(event), "automation": {"name": automation.name}}
        outcomes = []
        for seq, action in enumerate(automation.actions, start=2):
            outcome = {
                "action": action.kind,
                **await self.actions.take(automation, action, event, context),
            }
            outcomes.append(outcome)
            record = make_record(stream, seq, EventType.AUTOMATION_ACTION,
                                 {"automation": automation.name, "event_id": event["id"],
                                  **outcome})  # fmt: skip
            await self.store.append([record])
        await self._note_firing(automation.name, event, outcomes)
        self.fired += 1
        return 1

    async def _note_firing(
        self, name: str, event: dict[str, Any], outcomes: list[dict[str, Any]]
    ) -> None:
        """The automation's last firing and how many there were (what its page shows)."""
        earlier = await self.store.get_document(AUTOMATION_STATUS, name)
        count = int(earlier.body.get("fired", 0)) + 1 if earlier else 1
        body = {"fired": count, "last_fired": datetime.now(UTC).isoformat(),
                "last_event": {k: event.get(k) for k in ("id", "type", "resource")},
                "last_actions": outcomes}  # fmt: skip
        await save_document(self.store, AUTOMATION_STATUS, name, body)


__all__ = ["AutomationEngine", "firing_id"]
