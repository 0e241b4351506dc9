"""The scheduler: makes the runs of deployment schedules ahead of time, through ``submit``.

Every slot's run has a deterministic idempotency key (``schedule/<id>/<slot>``), so the
orchestrator makes it once however many schedulers ask, and however often one restarts. A
cursor per schedule (in the ``flowbus_schedules`` KV bucket) says up to when slots were handled;
after downtime, the slots between the cursor and now are the missed ones, and the deployment's
catch-up policy picks which of them still get a run (all, the latest, none). A paused schedule
moves its cursor along without making runs, so resuming it does not catch up on the pause.

Runs are made up to ``lookahead`` seconds ahead and wait Scheduled until their slot; the
orchestrator then applies the overlap policy and publishes them (see ``Orchestrator._release``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from flowbus.agents.lifecycle import Daemon, Loop
from flowbus.agents.settings import SchedulerEnv, default_of, load
from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.broker.streams import ensure_streams
from flowbus.engine.schedules import DeploymentSchedule
from flowbus.engine.store import DeploymentView, EventStore

log = structlog.get_logger("flowbus.scheduler")

#: Missed slots made at most, per schedule and pass, under the catch-up policy ``all``.
MAX_CATCH_UP = 1000


def slot_key(schedule_id: int, slot: datetime) -> str:
    """The idempotency key of a schedule's slot: the same run for the same slot, always."""
    return f"schedule/{schedule_id}/{slot.astimezone(UTC).isoformat()}"


@dataclass(frozen=True)
class SchedulerSettings:
    #: How far ahead runs are made (seconds).
    lookahead: float = default_of(SchedulerEnv, "scheduler_lookahead")
    #: Runs made ahead at most, per schedule.
    max_ahead: int = 10
    #: How often deployments are read again for new or changed schedules (seconds).
    interval: float = default_of(SchedulerEnv, "scheduler_interval")

    @classmethod
    def from_env(cls) -> SchedulerSettings:
        """From ``$FLOWBUS_SCHEDULER_LOOKAHEAD`` and ``$FLOWBUS_SCHEDULER_INTERVAL``."""
        env = load(SchedulerEnv)
        return cls(lookahead=env.scheduler_lookahead, interval=env.scheduler_interval)


def choose_slots(
    schedule: DeploymentSchedule,
    catchup: str,
    cursor: datetime,
    now: datetime,
    settings: SchedulerSettings,
) -> tuple[list[datetime], datetime]:
    """The slots to make runs for, and the new cursor (every slot up to it is handled).

    Slots in (cursor, now] were missed; the catch-up policy keeps all, the latest or none of
    them. Slots in (now, now + lookahead] come next, at most ``max_ahead`` of them."""
    horizon = now + timedelta(seconds=settings.lookahead)
    if not schedule.active:
        return [], max(cursor, horizon)
    rule = schedule.schedule
    missed: list[datetime] = []
    if cursor < now:
        for slot in rule.slots(cursor, now):
            missed.append(slot)
            if catchup == "all" and len(missed) >= MAX_CATCH_UP:
                break
    if catchup == "latest":
        missed = missed[-1:]
    elif catchup == "none":
        missed = []
    # Runs already made for slots still to come count against max_ahead.
    waiting = sum(1 for _ in rule.slots(now, cursor)) if cursor > now else 0
    ahead: list[datetime] = []
    if waiting >= settings.max_ahead:
        return missed, cursor
    for slot in rule.slots(max(cursor, now), horizon):
        ahead.append(slot)
        if waiting + len(ahead) >= settings.max_ahead:
            return missed + ahead, slot  # the rest when these have started
    return missed + ahead, max(cursor, horizon)


class Scheduler(Daemon):
    """Make the runs of every active schedule ahead of time until ``stop()``."""

    name = "scheduler"
    #: A pass under way at ``stop()`` ends (each of its runs is made once anyway).
    grace = 5.0

    def __init__(
        self, client: Client, store: EventStore, settings: SchedulerSettings | None = None
    ) -> None:
        super().__init__()
        self.client = client
        self.store = store
        self.settings = settings or SchedulerSettings.from_env()
        self._kv: KeyValue | None = None
        self.made = 0

    async def open(self) -> None:
        js = self.client.jetstream()
        await ensure_streams(js)
        self._kv = await js.key_value(subjects.SCHEDULES_BUCKET)
        log.info("scheduler started", lookahead=self.settings.lookahead)

    def loops(self) -> dict[str, Loop]:
        return {"passes": self._passes}

    async def _passes(self) -> None:
        while not self.stopping:
            try:
                await self.tick(datetime.now(UTC))
            except Exception:  # the next pass tries again; nothing is lost meanwhile
                log.exception("scheduler pass failed")
            await self.until_stopped(self.settings.interval)

    async def tick(self, now: datetime) -> int:
        """One pass over every deployment's schedules; returns the runs asked for."""
        asked = 0
        for deployment in await self.store.list_deployments():
            for raw in deployment.schedules:
                schedule = DeploymentSchedule.model_validate(raw)
                asked += await self._advance(deployment, schedule, now)
        return asked

    async def _advance(
        self, deployment: DeploymentView, schedule: DeploymentSchedule, now: datetime
    ) -> int:
        key = f"{deployment.id}.{schedule.id}"
        cursor = await self._cursor(key) or datetime.fromisoformat(deployment.updated)
        slots, next_cursor = choose_slots(schedule, deployment.catchup, cursor, now, self.settings)
        for slot in slots:
            await self._submit(deployment, schedule, slot)
        if next_cursor != cursor:
            assert self._kv is not None
            await self._kv.put(key, next_cursor.isoformat().encode())
        return len(slots)

    async def _cursor(self, key: str) -> datetime | None:
        assert self._kv is not None
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        return datetime.fromisoformat(entry.value.decode()) if entry.value else None

    async def _submit(
        self, deployment: DeploymentView, schedule: DeploymentSchedule, slot: datetime
    ) -> None:
        request = p.SubmitRequest(
            deployment=deployment.name,
            idempotency_key=slot_key(schedule.id, slot),
            scheduled_time=slot,
            schedule_id=schedule.id,
            tags=["scheduled"],
        )
        reply = await self.client.request(subjects.SUBMIT, request.dump(), timeout=10)
        answer = p.decode_reply(p.SubmitReply, reply.data)
        if isinstance(answer, p.ErrorReply):
            log.warning(
                "scheduled run refused",
                deployment=deployment.name,
                slot=slot.isoformat(),
                error=answer.error.message,
            )
            return
        if answer.created:
            self.made += 1
            log.info(
                "scheduled run made", deployment=deployment.name, slot=slot.isoformat(),
                run_id=answer.run_id,
            )  # fmt: skip
