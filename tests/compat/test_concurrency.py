"""prefect.concurrency: global limits in a flow run by hand (this process keeps the slots)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from flowbus import flow, task
from flowbus.concurrency.asyncio import concurrency as aconcurrency
from flowbus.concurrency.sync import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    concurrency,
    rate_limit,
)
from flowbus.engine.documents import save_document
from flowbus.engine.slot_table import GLOBAL_LIMIT
from flowbus.engine.store import store_from_url


def create_limit(name: str, limit: int, decay: float = 0.0, active: bool = True) -> None:
    async def save() -> None:
        async with store_from_url() as store:
            body = {"limit": limit, "slot_decay_per_second": decay, "active": active}
            await save_document(store, GLOBAL_LIMIT, name, body)

    asyncio.run(save())


class Peak:
    def __init__(self) -> None:
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


@pytest.fixture
def peak() -> Iterator[Peak]:
    yield Peak()


def test_a_limit_bounds_the_tasks_of_a_flow_run_by_hand(peak: Peak) -> None:
    create_limit("database", 2)

    @task
    def write(row: int) -> int:
        with concurrency("database", occupy=1), peak:
            time.sleep(0.05)
        return row

    @flow
    def load() -> list[int]:
        return write.map(range(8)).result()

    assert load() == list(range(8))
    assert peak.peak == 2


def test_occupy_strict_and_timeouts() -> None:
    create_limit("gpu", 2)
    too_many = concurrency("gpu", occupy=3)
    with pytest.raises(ConcurrencySlotAcquisitionError, match="limit of gpu is lower"):
        too_many.__enter__()
    missing = concurrency("no-such-limit", strict=True)
    with pytest.raises(ConcurrencySlotAcquisitionError, match="no active concurrency limit"):
        missing.__enter__()
    with concurrency("no-such-limit"):  # not strict: no limit, no wait
        pass
    with (
        concurrency("gpu", occupy=2),
        pytest.raises(AcquireConcurrencySlotTimeoutError),
        concurrency("gpu", timeout_seconds=0.2),
    ):
        pass
    with concurrency("gpu", occupy=2):  # the slots came back
        pass
    create_limit("paused-limit", 1, active=False)
    with concurrency("paused-limit", occupy=5):  # an inactive limit limits nothing
        pass


def test_rate_limit_paces_calls_at_the_decay_rate() -> None:
    create_limit("api", 2, decay=10.0)
    with pytest.raises(ConcurrencySlotAcquisitionError, match="slot decay"):
        create_limit("plain", 2)
        rate_limit("plain")
    began = time.monotonic()
    for _ in range(6):
        rate_limit("api")
    # Two at once, then one every 0.1 s: the last four waited at least 0.4 s in all.
    assert time.monotonic() - began >= 0.35


def test_async_concurrency_in_an_async_flow(peak: Peak) -> None:
    create_limit("http", 3)

    @task
    async def fetch(i: int) -> int:
        async with aconcurrency("http"):
            with peak:
                await asyncio.sleep(0.05)
        return i

    @flow
    async def crawl() -> list[int]:
        return list(await asyncio.gather(*[fetch(i) for i in range(9)]))

    assert asyncio.run(crawl()) == list(range(9))
    assert peak.peak == 3
