"""Retry delays: a number, a list, or a callable such as ``exponential_backoff(factor)``."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

RetryDelay = float | int | Sequence[float | int] | Callable[[int], Sequence[float | int]]


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Delays ``factor * 2**n`` for retry n = 0, 1, 2, ... (Prefect's helper of the same name)."""

    def retry_backoff_callable(retries: int) -> list[float]:
        return [backoff_factor * 2**n for n in range(min(retries, 50))]

    return retry_backoff_callable


def delay_list(retry_delay_seconds: RetryDelay | None, retries: int) -> list[float]:
    """Normalize any accepted ``retry_delay_seconds`` to one delay per retry."""
    if retry_delay_seconds is None or retries <= 0:
        return [0.0] * max(retries, 0)
    if callable(retry_delay_seconds):
        delays = [float(d) for d in retry_delay_seconds(retries)]
    elif isinstance(retry_delay_seconds, int | float):
        delays = [float(retry_delay_seconds)] * retries
    else:
        delays = [float(d) for d in retry_delay_seconds]
    if any(d < 0 for d in delays):
        raise ValueError("retry delays cannot be negative")
    if not delays:
        return [0.0] * retries
    # A list shorter than the number of retries repeats its last delay.
    return (delays + [delays[-1]] * retries)[:retries]


def jittered(delay: float, jitter_factor: float | None, rng: random.Random | None = None) -> float:
    """Spread a delay so that many retries do not fire at once.

    The result is uniform in ``[delay * (1 - j), delay * (1 + j)]`` (clamped at 0), so the
    average delay stays ``delay`` for ``j <= 1``.
    """
    if not jitter_factor or delay <= 0:
        return delay
    if jitter_factor < 0:
        raise ValueError("retry_jitter_factor cannot be negative")
    draw = (rng or random).uniform
    return draw(max(0.0, delay * (1 - jitter_factor)), delay * (1 + jitter_factor))


def next_delay(
    retry_number: int,
    delays: Sequence[float],
    jitter_factor: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """The wait before retry ``retry_number`` (1 for the first retry)."""
    if not delays:
        return 0.0
    base = delays[min(retry_number, len(delays)) - 1]
    return jittered(base, jitter_factor, rng)
