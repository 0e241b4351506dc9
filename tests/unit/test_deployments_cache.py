"""The orchestrator's deployments cache: a burst of submissions that finds a deployment due to
be read again waits for one read of the store, not one each (``Deployments.get``)."""

from __future__ import annotations

import asyncio

import pytest

from flowbus.agents.ledger import RunLedger
from flowbus.agents.orchestrator.deployments import Deployments
from flowbus.engine.errors import StoreError
from flowbus.engine.store import DeploymentView
from flowbus.engine.store.memory import MemoryEventStore

from .decision_tables import deployment


class SlowStore(MemoryEventStore):
    """Answers a deployment read once ``answer`` is set; counts the reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.answer = asyncio.Event()
        self.failing = False

    async def get_deployment(self, name: str) -> DeploymentView | None:
        self.reads += 1
        await self.answer.wait()
        if self.failing:
            raise StoreError("the store is locked")
        return deployment(name=name)


async def test_a_burst_shares_one_read_and_the_cache_serves_the_rest() -> None:
    store = SlowStore()
    deployments = Deployments(store, RunLedger(store))
    burst = [asyncio.ensure_future(deployments.get("f/d")) for _ in range(50)]
    await asyncio.sleep(0)
    store.answer.set()
    found = await asyncio.gather(*burst)
    assert store.reads == 1 and all(d is not None and d.name == "f/d" for d in found)
    assert (await deployments.get("f/d")) is found[0] and store.reads == 1


async def test_a_failed_read_fails_its_waiters_and_the_next_call_reads_again() -> None:
    store = SlowStore()
    store.failing = True
    deployments = Deployments(store, RunLedger(store))
    burst = [asyncio.ensure_future(deployments.get("f/d")) for _ in range(3)]
    await asyncio.sleep(0)
    store.answer.set()
    for outcome in await asyncio.gather(*burst, return_exceptions=True):
        assert isinstance(outcome, StoreError)
    store.failing = False
    assert (await deployments.get("f/d")) is not None and store.reads == 2


async def test_a_cancelled_caller_does_not_cancel_the_read_of_the_others() -> None:
    store = SlowStore()
    deployments = Deployments(store, RunLedger(store))
    first = asyncio.ensure_future(deployments.get("f/d"))
    second = asyncio.ensure_future(deployments.get("f/d"))
    await asyncio.sleep(0)
    first.cancel()
    store.answer.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await second) is not None and store.reads == 1
