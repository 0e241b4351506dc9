"""Which occurrences the scheduler makes runs for: catch-up policies after downtime, runs ahead of
time, a paused schedule (pure logic; the daemon is tested against a real nats-server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flowbus.agents.scheduler import SchedulerSettings, choose_occurrences
from flowbus.engine.schedules import DeploymentSchedule, IntervalSchedule, occurrence_key

NOW = datetime(2026, 11, 24, 6, 0, 30, tzinfo=UTC)
MINUTELY = DeploymentSchedule(id=1, schedule=IntervalSchedule(interval=60))
SETTINGS = SchedulerSettings(lookahead=300, max_ahead=3)


def at(minute: int, hour: int = 6) -> datetime:
    return datetime(2026, 11, 24, hour, minute, tzinfo=UTC)


def test_after_downtime_all_missed_slots_or_the_latest_or_none() -> None:
    ten_minutes_down = NOW - timedelta(minutes=10)
    ahead = [at(1), at(2), at(3)]
    everything, _ = choose_occurrences(MINUTELY, "all", ten_minutes_down, NOW, SETTINGS)
    assert everything == [at(m, hour=5) for m in range(51, 60)] + [at(0)] + ahead
    latest, _ = choose_occurrences(MINUTELY, "latest", ten_minutes_down, NOW, SETTINGS)
    assert latest == [at(0), *ahead]
    none, _ = choose_occurrences(MINUTELY, "none", ten_minutes_down, NOW, SETTINGS)
    assert none == ahead


def test_runs_ahead_are_capped_and_the_cursor_stops_at_the_last_one_made() -> None:
    occurrences, cursor = choose_occurrences(MINUTELY, "latest", NOW, NOW, SETTINGS)
    assert occurrences == [at(1), at(2), at(3)] and cursor == at(3)
    # A moment later the three are still waiting: nothing more is made.
    again, same = choose_occurrences(
        MINUTELY, "latest", cursor, NOW + timedelta(seconds=5), SETTINGS
    )
    assert again == [] and same == cursor
    # Once the first has started, one more.
    later, moved = choose_occurrences(
        MINUTELY, "latest", cursor, at(1) + timedelta(seconds=1), SETTINGS
    )
    assert later == [at(4)] and moved == at(4)


def test_without_a_cap_the_cursor_moves_to_the_lookahead_horizon() -> None:
    hourly = DeploymentSchedule(id=2, schedule=IntervalSchedule(interval=3600))
    occurrences, cursor = choose_occurrences(hourly, "latest", NOW, NOW, SETTINGS)
    assert occurrences == [] and cursor == NOW + timedelta(seconds=300)


def test_a_paused_schedule_makes_nothing_and_does_not_catch_up_on_its_pause() -> None:
    paused = MINUTELY.model_copy(update={"active": False})
    occurrences, cursor = choose_occurrences(paused, "all", NOW - timedelta(hours=1), NOW, SETTINGS)
    assert occurrences == [] and cursor == NOW + timedelta(seconds=300)


def test_an_occurrence_has_one_idempotency_key_whatever_its_zone() -> None:
    paris = at(0).astimezone(ZoneInfo("Europe/Paris"))
    assert (
        occurrence_key(1, paris)
        == occurrence_key(1, at(0))
        == "schedule/1/2026-11-24T06:00:00+00:00"
    )
