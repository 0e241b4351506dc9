"""``flowbus store backup`` while runs complete, ``flowbus store restore``: the restored store
verifies, and the next leader records the events the backup missed from the events stream, each
once, so every run submitted before and after the backup is there, Completed once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.postgres import fresh_schema
from tests.integration.stack import Stack, wait_until

RUNS = 40


def completed(stack: Stack) -> int:
    return len(stack.with_store(lambda s: s.list_flow_runs(state="COMPLETED", limit=10 * RUNS)))


@pytest.mark.timeout(400)
async def test_a_backup_taken_under_load_restores_and_catches_up(
    stack: Stack, tmp_path: Path
) -> None:
    await backup_restore_and_catch_up(stack, tmp_path / "backups" / "flowbus-backup.db")


@pytest.mark.timeout(400)
async def test_a_postgresql_store_backs_up_restores_and_catches_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with a PostgreSQL store: pg_dump of its schema, pg_restore in one transaction."""
    async with fresh_schema() as url:
        stack = Stack(tmp_path, store_url=url)
        stack.service_env(monkeypatch)
        try:
            await backup_restore_and_catch_up(stack, tmp_path / "backups" / "flowbus.dump")
            stranger = tmp_path / "stranger.dump"
            stranger.write_bytes(b"PGDMP not really")
            refused = stack.cli("store", "restore", str(stranger), "--yes", check=False)
            assert refused.returncode == 2, refused.stdout + refused.stderr
            assert "pg_restore --list failed" in refused.stdout + refused.stderr
            assert "match" in stack.cli("store", "verify").stdout  # left as it was
        finally:
            stack.close()


async def backup_restore_and_catch_up(stack: Stack, backup: Path) -> None:
    orchestrator = stack.start_orchestrator()
    deployment = stack.deploy("quick")
    agent = stack.start_agent("agent-1")
    async with stack.client() as client:
        ids = []
        for number in range(RUNS):
            ids.append((await client.submit(deployment, {"n": number})).run_id)
            if number == RUNS // 2:  # runs queued, running and completing around it
                made = await asyncio.to_thread(stack.cli, "store", "backup", str(backup), "--json")
                taken = json.loads(made.stdout)
            await asyncio.sleep(0.05)
        for run_id in ids:
            assert (await client.wait(run_id, timeout=120)).completed
    assert taken["path"] == str(backup) and backup.exists()
    # A backup never overwrites.
    again = stack.cli("store", "backup", str(backup), check=False)
    assert again.returncode == 2 and "exists" in again.stdout + again.stderr

    assert agent.stop() == 0 and orchestrator.stop() == 0
    restored = stack.cli("store", "restore", str(backup), "--yes")
    assert "records the events stream again" in restored.stdout
    assert completed(stack) < RUNS  # the backup missed the later runs
    verify = stack.cli("store", "verify")
    assert "match" in verify.stdout

    stack.start_orchestrator()
    wait_until(lambda: completed(stack) == RUNS, 240, f"all {RUNS} runs recorded again")
    for run_id in ids:
        states = Counter(stack.states(run_id))
        assert states["Completed"] == 1 and states["Scheduled"] == 1, (run_id, states)
    assert "match" in stack.cli("store", "verify").stdout


def test_restore_refuses_what_is_not_a_backup(stack: Stack, tmp_path: Path) -> None:
    missing = stack.cli("store", "restore", str(tmp_path / "nope.db"), "--yes", check=False)
    assert missing.returncode == 2 and "no backup at" in missing.stdout + missing.stderr
    stranger = tmp_path / "other.db"
    subprocess.run([sys.executable, "-c", f"import sqlite3; sqlite3.connect({str(stranger)!r})"
                    ".execute('create table t (x)')"], check=True)  # fmt: skip
    before = stranger.read_bytes()
    refused = stack.cli("store", "restore", str(stranger), "--yes", check=False)
    assert (
        refused.returncode == 2 and "not a flowbus store backup" in refused.stdout + refused.stderr
    )
    assert stranger.read_bytes() == before  # left as it was
