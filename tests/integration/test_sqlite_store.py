"""The SQLite store passes the store contract on real files, and fails clearly when it must."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowbus.engine.errors import StoreError
from flowbus.engine.store import EventStore, SqliteEventStore
from flowbus.engine.store.migrations import load_migrations
from tests.integration.store_contract import (
    RunBuilder,
    StoreContract,
    started_elsewhere,
    verified_while_written,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    async with SqliteEventStore(tmp_path / "flowbus.db") as opened:
        yield opened


class TestSqliteStore(StoreContract):
    pass


async def test_a_run_another_process_started_is_not_taken_as_new(tmp_path: Path) -> None:
    path = tmp_path / "flowbus.db"
    async with SqliteEventStore(path) as first, SqliteEventStore(path) as second:
        await started_elsewhere(first, second)


async def test_verify_sees_one_snapshot_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "flowbus.db"
    async with SqliteEventStore(path) as first, SqliteEventStore(path) as second:
        await verified_while_written(first, second)


async def test_events_survive_reopening_and_migrations_run_once(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "flowbus.db"
    run = RunBuilder()
    events = run.complete_run()
    async with SqliteEventStore(path) as store:
        await store.append(events)
    async with SqliteEventStore(path) as store:
        assert [e.id for e in await store.read_stream(run.run_id)] == [e.id for e in events]
        assert (await store.get_flow_run(run.run_id)).state_name == "Completed"
    with sqlite3.connect(path) as db:
        applied = db.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
        assert applied == len(load_migrations())
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_verify_detects_a_tampered_projection(tmp_path: Path) -> None:
    path = tmp_path / "flowbus.db"
    run = RunBuilder()
    async with SqliteEventStore(path) as store:
        await store.append(run.complete_run(tasks=2))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE task_runs SET run_count = 9")
    async with SqliteEventStore(path) as store:
        differences = await store.verify_projections()
        assert differences and all(line.startswith("task_runs") for line in differences)
        await store.rebuild_projections()
        assert await store.verify_projections() == []


async def test_a_locked_database_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "flowbus.db"
    run = RunBuilder()
    async with SqliteEventStore(path, busy_timeout=0.2) as store:
        await store.append([run.created()])
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="locked"):
                await store.append([run.log("x")])
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # The refused batch was not half-written: the same events append cleanly now.
        run.seq -= 1
        assert await store.append([run.log("x")]) == 1
        assert await store.head(run.run_id) == 2


async def test_a_full_disk_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "flowbus.db"
    async with SqliteEventStore(path) as store:
        pages = (await store.db.execute_fetchall("PRAGMA page_count"))[0][0]
        await store.db.execute(f"PRAGMA max_page_count = {pages}")
        run = RunBuilder()
        with pytest.raises(StoreError, match="full"):
            await store.append(run.complete_run(tasks=200))
        await store.db.execute("PRAGMA max_page_count = 1073741823")
        run.seq = 0
        assert await store.append(run.complete_run(tasks=200)) > 0


async def test_an_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="folder"):
        await SqliteEventStore(blocker / "flowbus.db").open()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        await SqliteEventStore(garbage).open()
