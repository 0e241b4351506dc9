"""The scheduler: makes the runs of deployment schedules ahead of time, through ``submit``.

A schedule's occurrences are the times its rule gives (cron, interval, RRULE); a concurrency
"slot" is something else (tag and global limits). Every occurrence's run has a deterministic
idempotency key (``schedule/<id>/<occurrence>``), so the orchestrator makes it once however
many schedulers ask, and however often one restarts. A cursor per schedule (in the
``flowbus_schedules`` KV bucket) says up to when occurrences were handled; after downtime,
the occurrences between the cursor and now are the missed ones, and the deployment's
catch-up policy picks which of them still get a run (all, the latest, none). A paused schedule
moves its cursor along without making runs, so resuming it does not catch up on the pause.

Runs are made up to ``lookahead`` seconds ahead and wait Scheduled until their occurrence;
the orchestrator's leader then applies the overlap policy and publishes them
(``agents/orchestrator/releases.py``).
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
from flowbus.broker import subjects, versions
from flowbus.broker.streams import ensure_streams
from flowbus.engine.schedules import DeploymentSchedule, occurrence_key
from flowbus.engine.store import DeploymentView, EventStore

log = structlog.get_logger("flowbus.scheduler")

#: Missed occurrences made at most, per schedule and pass, under the catch-up policy ``all``.
MAX_CATCH_UP = 1000


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


def choose_occurrences(
    schedule: DeploymentSchedule,
    catchup: str,
    cursor: datetime,
    now: datetime,
    settings: SchedulerSettings,
) -> tuple[list[datetime], datetime]:
    """The occurrences to make runs for, and the new cursor (every occurrence up to it is handled).

    Occurrences in (cursor, now] were missed; the catch-up policy keeps all, the latest or none of
    them. Occurrences in (now, now + lookahead] come next, at most ``max_ahead`` of them."""
    horizon = now + timedelta(seconds=settings.lookahead)
    if not schedule.active:
        return [], max(cursor, horizon)
    rule = schedule.schedule
    missed: list[datetime] = []
    if cursor < now:
        for occurrence in rule.occurrences(cursor, now):
            missed.append(occurrence)
            if catchup == "all" and len(missed) >= MAX_CATCH_UP:
                break
    if catchup == "latest":
        missed = missed[-1:]
    elif catchup == "none":
        missed = []
    # Runs already made for occurrences still to come count against max_ahead.
    waiting = sum(1 for _ in rule.occurrences(now, cursor)) if cursor > now else 0
    ahead: list[datetime] = []
    if waiting >= settings.max_ahead:
        return missed, cursor
    for occurrence in rule.occurrences(max(cursor, now), horizon):
        ahead.append(occurrence)
        if waiting + len(ahead) >= settings.max_ahead:
            return missed + ahead, occurrence  # the rest when these have started
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
        occurrences, next_cursor = choose_occurrences(
            schedule, deployment.catchup, cursor, now, self.settings
        )
        for occurrence in occurrences:
            await self._submit(deployment, schedule, occurrence)
        if next_cursor != cursor:
            assert self._kv is not None
            await self._kv.put(key, next_cursor.isoformat().encode())
        return len(occurrences)

    async def _cursor(self, key: str) -> datetime | None:
        assert self._kv is not None
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        return datetime.fromisoformat(entry.value.decode()) if entry.value else None

    async def _submit(
        self, deployment: DeploymentView, schedule: DeploymentSchedule, occurrence: datetime
    ) -> None:
        request = p.SubmitRequest(
            deployment=deployment.name,
            idempotency_key=occurrence_key(schedule.id, occurrence),
            scheduled_time=occurrence,
            schedule_id=schedule.id,
            tags=["scheduled"],
        )
        reply = await self.client.request(
            subjects.SUBMIT, request.dump(), timeout=10, headers=versions.with_version()
        )
        answer = p.decode_reply(p.SubmitReply, reply.data)
        if isinstance(answer, p.ErrorReply):
            log.warning(
                "scheduled run refused",
                deployment=deployment.name,
                occurrence=occurrence.isoformat(),
                error=answer.error.message,
            )
            return
        if answer.created:
            self.made += 1
            log.info(
                "scheduled run made", deployment=deployment.name, occurrence=occurrence.isoformat(),
                run_id=answer.run_id,
            )  # fmt: skip
