"""Schedules list their occurrences: cron and RRULE in a time zone across daylight saving changes,
intervals from an anchor; bad input is refused with a clear message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from flowbus.engine.schedules import (
    CronSchedule,
    IntervalSchedule,
    RRuleSchedule,
    Schedule,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def occurrences(schedule: CronSchedule | IntervalSchedule | RRuleSchedule, start: datetime,
          span: timedelta) -> list[str]:  # fmt: skip
    return [occurrence.isoformat() for occurrence in schedule.occurrences(start, start + span)]


def test_cron_in_a_time_zone_follows_its_offset() -> None:
    daily = CronSchedule(cron="0 6 * * *", timezone="Europe/Paris")
    assert occurrences(daily, utc(2026, 1, 10), timedelta(days=2)) == [
        "2026-01-10T05:00:00+00:00", "2026-01-11T05:00:00+00:00",
    ]  # fmt: skip
    assert occurrences(daily, utc(2026, 7, 10), timedelta(days=1)) == ["2026-07-10T04:00:00+00:00"]


def test_a_skipped_wall_clock_time_fires_after_the_jump_and_a_repeated_one_once() -> None:
    nightly = CronSchedule(cron="30 2 * * *", timezone="Europe/Paris")
    # 2026-03-29: 02:00 -> 03:00 in Paris; 02:30 does not exist and fires at 03:30 CEST.
    assert occurrences(nightly, utc(2026, 3, 28), timedelta(days=2, hours=1)) == [
        "2026-03-28T01:30:00+00:00", "2026-03-29T01:30:00+00:00", "2026-03-30T00:30:00+00:00",
    ]  # fmt: skip
    # 2026-10-25: 03:00 -> 02:00; 02:30 happens twice and fires once, the first time.
    assert occurrences(nightly, utc(2026, 10, 24), timedelta(days=2)) == [
        "2026-10-24T00:30:00+00:00", "2026-10-25T00:30:00+00:00",
    ]  # fmt: skip


def test_slots_are_after_start_and_up_to_end() -> None:
    hourly = CronSchedule(cron="0 * * * *")
    assert occurrences(hourly, utc(2026, 1, 1, 5), timedelta(hours=2)) == [
        "2026-01-01T06:00:00+00:00", "2026-01-01T07:00:00+00:00",
    ]  # fmt: skip
    assert hourly.next_occurrence(utc(2026, 1, 1, 5, 59, 59)) == utc(2026, 1, 1, 6)


def test_an_interval_counts_from_its_anchor() -> None:
    every_five = IntervalSchedule(interval=300, anchor=utc(2026, 1, 1, 0, 2))
    assert occurrences(every_five, utc(2026, 3, 1), timedelta(minutes=11)) == [
        "2026-03-01T00:02:00+00:00", "2026-03-01T00:07:00+00:00",
    ]  # fmt: skip
    before_anchor = IntervalSchedule(interval=60, anchor=utc(2026, 5, 1))
    assert occurrences(before_anchor, utc(2026, 4, 30, 23, 59), timedelta(minutes=2)) == [
        "2026-05-01T00:00:00+00:00", "2026-05-01T00:01:00+00:00",
    ]  # fmt: skip


def test_an_interval_of_whole_days_keeps_its_wall_clock_time() -> None:
    daily = IntervalSchedule(
        interval=86400, anchor=datetime(2026, 3, 1, 6, 0), timezone="Europe/Paris"
    )
    assert occurrences(daily, utc(2026, 3, 28), timedelta(days=2)) == [
        "2026-03-28T05:00:00+00:00", "2026-03-29T04:00:00+00:00",
    ]  # fmt: skip


def test_an_rrule_in_a_time_zone() -> None:
    rule = RRuleSchedule(
        rrule="FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=6;BYMINUTE=0;BYSECOND=0", timezone="Europe/Paris"
    )
    assert occurrences(rule, utc(2026, 3, 27), timedelta(days=8)) == [
        "2026-03-30T04:00:00+00:00", "2026-04-01T04:00:00+00:00",
    ]  # fmt: skip
    limited = RRuleSchedule(rrule="DTSTART:20260101T120000\nRRULE:FREQ=DAILY;COUNT=2")
    assert occurrences(limited, utc(2025, 12, 31), timedelta(days=30)) == [
        "2026-01-01T12:00:00+00:00", "2026-01-02T12:00:00+00:00",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"kind": "cron", "cron": "61 * * * *"}, "not a cron expression"),
        ({"kind": "cron", "cron": "* * *"}, "not a cron expression"),
        ({"kind": "cron", "cron": "0 6 * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"kind": "interval", "interval": 0}, "greater than 0"),
        ({"kind": "rrule", "rrule": "FREQ=SOMETIMES"}, "not a recurrence rule"),
        ({"kind": "rrule", "rrule": "DTSTART:20260101T060000Z\nRRULE:FREQ=DAILY"}, "DTSTART"),
        ({"kind": "weekly"}, "does not match any of the expected tags"),
    ],
)
def test_bad_schedules_are_refused_clearly(given: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TypeAdapter(Schedule).validate_python(given)
