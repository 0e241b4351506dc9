"""How many replicas flowbus's streams get: as configured, else from the cluster's size."""

from __future__ import annotations

import pytest

from flowbus.broker import subjects
from flowbus.broker.streams import (
    EventsLimits,
    configured_events_limits,
    replicas_for,
    stream_configs,
)


@pytest.mark.parametrize(
    ("servers", "configured", "expected"),
    [(1, None, 1), (2, None, 1), (3, None, 3), (5, None, 3), (5, 1, 1), (1, 3, 3)],
)
def test_replicas_follow_the_cluster_unless_configured(
    servers: int, configured: int | None, expected: int
) -> None:
    assert replicas_for(servers, configured) == expected


def test_every_stream_gets_the_replicas() -> None:
    assert {config.num_replicas for config in stream_configs(3)} == {3}


def test_the_events_limits_apply_to_the_events_stream_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert configured_events_limits() == EventsLimits()  # seven days, no size cap
    monkeypatch.setenv("FLOWBUS_EVENTS_MAX_AGE_HOURS", "24")
    monkeypatch.setenv("FLOWBUS_EVENTS_MAX_BYTES", "2000000000")
    limits = configured_events_limits()
    assert limits == EventsLimits(max_age_seconds=86400, max_bytes=2_000_000_000)
    configs = {config.name: config for config in stream_configs(1, limits)}
    events = configs.pop(subjects.EVENTS_STREAM)
    assert (events.max_age, events.max_bytes) == (86400, 2_000_000_000)
    assert all(config.max_bytes is None for config in configs.values())
