"""Retry delays: numbers, lists, exponential backoff, and jitter."""

from __future__ import annotations

import random
import statistics

import pytest

from flowbus import exponential_backoff
from flowbus.engine.retries import delay_list, jittered, next_delay


def test_a_number_applies_to_every_retry() -> None:
    assert delay_list(5, 3) == [5.0, 5.0, 5.0]


def test_a_short_list_repeats_its_last_delay() -> None:
    assert delay_list([1, 10], 4) == [1.0, 10.0, 10.0, 10.0]


def test_a_long_list_is_cut_to_the_number_of_retries() -> None:
    assert delay_list([1, 2, 3, 4], 2) == [1.0, 2.0]


def test_exponential_backoff_doubles() -> None:
    assert delay_list(exponential_backoff(backoff_factor=10), 4) == [10.0, 20.0, 40.0, 80.0]


def test_no_delay_and_no_retries() -> None:
    assert delay_list(None, 2) == [0.0, 0.0]
    assert delay_list(5, 0) == []


def test_negative_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        delay_list([-1], 1)


def test_next_delay_picks_the_delay_of_that_retry() -> None:
    delays = [1.0, 2.0, 4.0]
    assert [next_delay(n, delays) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]


def test_jitter_stays_within_bounds_and_keeps_the_average() -> None:
    rng = random.Random(7)
    samples = [jittered(10.0, 0.5, rng) for _ in range(20_000)]
    assert min(samples) >= 5.0
    assert max(samples) <= 15.0
    assert statistics.fmean(samples) == pytest.approx(10.0, rel=0.02)
    assert statistics.pstdev(samples) > 1.0  # it really spreads


def test_no_jitter_factor_means_exact_delays() -> None:
    assert jittered(3.0, None) == 3.0
    assert jittered(3.0, 0) == 3.0
