"""Schedules: when a deployment runs by itself. Cron (with a time zone), interval (with an
anchor) and RRULE (RFC 5545), each a pydantic model that lists its occurrences in a window.

Time zones and daylight saving time: cron and RRULE occurrences are wall-clock times in the
schedule's zone. A wall-clock time that does not exist (the hour skipped in spring) fires at
the same distance past the jump (02:30 becomes 03:30); a time that happens twice (the hour
repeated in autumn) fires once, the first time. An interval of whole days keeps its wall-clock
time across a change (daily at 06:00 stays 06:00); other intervals are exact durations.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dateutil.rrule import rruleset, rrulestr
from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Where an interval without an anchor counts from (a Monday, midnight UTC).
DEFAULT_ANCHOR = datetime(2026, 1, 5, tzinfo=UTC)
DAY = 86400


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name: Europe/Paris)") from exc


def _to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall-clock time in ``zone`` as UTC. fold=0 picks the first of a repeated time;
    for a skipped one it applies the offset before the jump, which lands past the jump."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _increasing(
    occurrences: Iterator[datetime], start: datetime, end: datetime
) -> Iterator[datetime]:
    """Occurrences in (start, end], strictly increasing (a skipped wall-clock time moved past
    the jump can meet a real one)."""
    last = start
    for occurrence in occurrences:
        if occurrence > end:
            return
        if occurrence > last:
            last = occurrence
            yield occurrence


class _Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        _zone(value)
        return value

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    def occurrences(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """The occurrences after ``start`` up to and including ``end`` (aware datetimes), in UTC."""
        raise NotImplementedError  # pragma: no cover - every kind defines it

    def next_occurrence(self, after: datetime) -> datetime | None:
        """The first occurrence after ``after`` within ten years, or None."""
        return next(self.occurrences(after, after + timedelta(days=3660)), None)


class CronSchedule(_Schedule):
    """``cron``: five fields (minute hour day month weekday) read in ``timezone``."""

    kind: Literal["cron"] = "cron"
    cron: str

    @field_validator("cron")
    @classmethod
    def _valid(cls, value: str) -> str:
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"not a cron expression of five fields: {value!r}")
        return value

    def occurrences(self, start: datetime, end: datetime) -> Iterator[datetime]:
        zone = self.zone
        # Iterate naive wall-clock times: each happens once, whatever the offsets do.
        local_start = start.astimezone(zone).replace(tzinfo=None) - timedelta(hours=3)
        times = croniter(self.cron, local_start, ret_type=datetime)
        yield from _increasing(
            (_to_utc(times.get_next(datetime), zone) for _ in iter(int, 1)), start, end
        )

    def __str__(self) -> str:
        return f"cron {self.cron} ({self.timezone})"


class IntervalSchedule(_Schedule):
    """Every ``interval`` seconds from ``anchor`` (a wall-clock time in ``timezone`` when it has
    none); whole days keep their wall-clock time across daylight saving changes."""

    kind: Literal["interval"] = "interval"
    interval: float = Field(gt=0)
    anchor: datetime | None = None

    def _anchor(self) -> datetime:
        if self.anchor is None:
            return DEFAULT_ANCHOR
        if self.anchor.tzinfo is None:
            return self.anchor.replace(tzinfo=self.zone)
        return self.anchor

    def occurrences(self, start: datetime, end: datetime) -> Iterator[datetime]:
        anchor = self._anchor()
        if self.interval % DAY == 0:
            yield from _increasing(self._whole_days(anchor, start), start, end)
            return
        step = timedelta(seconds=self.interval)
        # The first multiple of the interval after start, counted from the anchor.
        count = max(0, int((start - anchor) / step) + 1) if start >= anchor else 0
        occurrence = anchor + count * step
        while occurrence <= start:
            occurrence += step
        while occurrence <= end:
            yield occurrence.astimezone(UTC)
            occurrence += step

    def _whole_days(self, anchor: datetime, start: datetime) -> Iterator[datetime]:
        zone, days = self.zone, int(self.interval // DAY)
        local_anchor = anchor.astimezone(zone).replace(tzinfo=None)
        skip = max(0, (start.astimezone(zone).replace(tzinfo=None) - local_anchor).days // days - 1)
        local = local_anchor + timedelta(days=skip * days)
        while True:
            yield _to_utc(local, zone)
            local += timedelta(days=days)

    def __str__(self) -> str:
        return f"every {self.interval:g} s"


def _rules(text: str) -> rruleset:
    """A rule's occurrences as naive wall-clock times; without DTSTART it counts from the
    default anchor's midnight."""
    return rrulestr(text, dtstart=DEFAULT_ANCHOR.replace(tzinfo=None), forceset=True)


class RRuleSchedule(_Schedule):
    """An RFC 5545 recurrence rule (``FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=6;BYMINUTE=0``), read as
    wall-clock times in ``timezone``; its DTSTART (if any) is the anchor."""

    kind: Literal["rrule"] = "rrule"
    rrule: str

    @field_validator("rrule")
    @classmethod
    def _valid(cls, value: str) -> str:
        try:
            first = next(iter(_rules(value)), None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a recurrence rule: {value!r} ({exc})") from exc
        if first is not None and first.tzinfo is not None:
            raise ValueError("give DTSTART without a zone: the schedule's timezone applies")
        return value

    def occurrences(self, start: datetime, end: datetime) -> Iterator[datetime]:
        zone, rules = self.zone, _rules(self.rrule)
        cursor = (start - timedelta(hours=3)).astimezone(zone).replace(tzinfo=None)

        def walk() -> Iterator[datetime]:
            nonlocal cursor
            while (found := rules.after(cursor)) is not None:
                cursor = found
                yield _to_utc(found, zone)

        yield from _increasing(walk(), start, end)

    def __str__(self) -> str:
        return f"rrule {self.rrule} ({self.timezone})"


Schedule = Annotated[CronSchedule | IntervalSchedule | RRuleSchedule, Field(discriminator="kind")]


def schedule_rule(
    cron: str | None = None,
    interval: float | timedelta | None = None,
    rrule: str | None = None,
    timezone: str = "UTC",
    anchor: datetime | None = None,
) -> CronSchedule | IntervalSchedule | RRuleSchedule:
    """One schedule from whichever of ``cron``, ``interval`` (seconds or a timedelta) and
    ``rrule`` is given (``flowbus deploy``'s options, prefect.yaml, ``flow.deploy``);
    ``UsageError`` saying what is wrong."""
    from pydantic import ValidationError

    from flowbus.engine.errors import UsageError

    try:
        if cron is not None:
            return CronSchedule(cron=cron, timezone=timezone)
        if interval is not None:
            seconds = interval.total_seconds() if isinstance(interval, timedelta) else interval
            return IntervalSchedule(interval=seconds, anchor=anchor, timezone=timezone)
        if rrule is not None:
            return RRuleSchedule(rrule=rrule, timezone=timezone)
    except ValidationError as exc:
        raise UsageError(f"invalid schedule: {'; '.join(e['msg'] for e in exc.errors())}") from None
    raise UsageError("a schedule needs a cron, an interval or an rrule")


class DeploymentSchedule(BaseModel):
    """One schedule of a deployment: ``id`` names it in commands (1, 2, ...), ``active`` is
    False while it is paused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=1)
    schedule: Schedule
    active: bool = True


#: After downtime: run every missed occurrence, only the latest, or none.
CatchUp = Literal["all", "latest", "none"]
#: When an occurrence comes while the deployment's previous run still runs.
Overlap = Literal["allow", "skip", "cancel"]


def describe_all(deployment: Any) -> list[dict[str, Any]]:
    """A deployment's schedules as the CLI and the API show them: the definition, a summary
    and the next occurrence (None while paused)."""
    now = datetime.now(UTC)
    shown = []
    for raw in deployment.schedules:
        schedule = DeploymentSchedule.model_validate(raw)
        upcoming = schedule.schedule.next_occurrence(now) if schedule.active else None
        shown.append({
            "id": schedule.id,
            "active": schedule.active,
            "schedule": schedule.schedule.model_dump(mode="json"),
            "summary": str(schedule.schedule),
            "next_slot": upcoming.isoformat() if upcoming else None,
        })  # fmt: skip
    return shown


def occurrence_key(schedule_id: int, occurrence: datetime) -> str:
    """The idempotency key of a schedule's occurrence: the same run for it, always (the
    scheduler and ``flowbus backfill`` make it alike, so an occurrence has one run)."""
    return f"schedule/{schedule_id}/{occurrence.astimezone(UTC).isoformat()}"
