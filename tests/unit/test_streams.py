"""How many replicas flowbus's streams get: as configured, else from the cluster's size."""

from __future__ import annotations

import pytest

from flowbus.broker.streams import replicas_for, stream_configs


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
