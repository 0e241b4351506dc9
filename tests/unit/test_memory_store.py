"""The in-memory twin passes the store contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flowbus.engine.store import EventStore, MemoryEventStore
from tests.integration.store_contract import RunBuilder, StoreContract


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    async with MemoryEventStore() as opened:
        yield opened


class TestMemoryStore(StoreContract):
    async def test_verify_detects_a_tampered_projection(self, store: MemoryEventStore) -> None:
        run = RunBuilder()
        await store.append(run.complete_run())
        store._tables["flow_runs"][run.run_id]["state_name"] = "Crashed"
        assert any("flow_runs" in line for line in await store.verify_projections())
