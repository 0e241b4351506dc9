"""The PostgreSQL store passes the same store contract, on a real server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from flowbus.engine.errors import StoreError
from flowbus.engine.store import EventStore, store_from_url
from flowbus.engine.store.postgres import PostgresEventStore
from tests.integration.postgres import fresh_schema
from tests.integration.store_contract import (
    RunBuilder,
    StoreContract,
    started_elsewhere,
    verified_while_written,
)


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    async with fresh_schema() as url:
        opened = store_from_url(url)
        assert isinstance(opened, PostgresEventStore)
        async with opened:
            yield opened


class TestPostgresStore(StoreContract):
    pass


async def test_two_stores_on_one_schema_share_the_log() -> None:
    async with fresh_schema() as url:
        first, second = PostgresEventStore(url), PostgresEventStore(url)
        async with first, second:  # migrations run once, under a lock
            run = RunBuilder()
            await first.append([run.created()])
            await second.append([run.log("from the second")])
            assert [e.seq for e in await first.read_stream(run.run_id)] == [1, 2]
            assert await first.verify_projections() == []
            await started_elsewhere(first, second)


async def test_verify_sees_one_snapshot_while_another_orchestrator_writes() -> None:
    async with (
        fresh_schema() as url,
        PostgresEventStore(url) as first,
        PostgresEventStore(url) as second,
    ):
        await verified_while_written(first, second)


async def test_verify_detects_a_tampered_projection() -> None:
    import asyncpg

    async with fresh_schema() as url, PostgresEventStore(url) as store:
        run = RunBuilder()
        await store.append(run.complete_run(tasks=2))
        schema = url.rsplit("schema=", 1)[1]
        conn = await asyncpg.connect(url.split("?")[0])
        await conn.execute(f'UPDATE "{schema}".task_runs SET run_count = 9')
        await conn.close()
        differences = await store.verify_projections()
        assert differences and all(line.startswith("task_runs") for line in differences)
        await store.rebuild_projections()
        assert await store.verify_projections() == []


async def test_an_unreachable_server_is_a_clear_error() -> None:
    expected = re.escape("cannot use the PostgreSQL store at postgresql://127.0.0.1:1/none")
    with pytest.raises(StoreError, match=expected):
        await PostgresEventStore("postgresql://nobody@127.0.0.1:1/none").open()


def test_a_bad_schema_name_is_refused() -> None:
    with pytest.raises(StoreError, match="not a plain identifier"):
        PostgresEventStore("postgresql://x@127.0.0.1/db?schema=drop;table")
