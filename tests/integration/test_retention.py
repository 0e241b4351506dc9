"""``flowbus store prune`` on a real SQLite store: finished runs past the policy go whole, the
store verifies and a rebuild agrees; unfinished runs, failed runs kept longer and the run of a
key's latest artifact stay; a dry run removes nothing; bad ages and a prune while another holds
the lease are refused with nothing removed; the file gives disk back."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowbus.engine.records import EventRecord, make_record, state_dict
from flowbus.engine.retention import RetentionPolicy, prune, take_lease
from flowbus.engine.states import AwaitingRetry, Crashed, Failed, Running
from flowbus.engine.store import SqliteEventStore
from tests.integration.stack import Stack, wait_until
from tests.integration.store_contract import ENVELOPE, RunBuilder

NOW = datetime.now(UTC)


def aged(records: list[EventRecord], days: float) -> list[EventRecord]:
    """The run's events as if they happened ``days`` ago."""
    when = (NOW - timedelta(days=days)).isoformat()
    made = []
    for record in records:
        fields = {k: v for k, v in record.data.items() if k not in ENVELOPE}
        if isinstance(fields.get("state"), dict):
            fields["state"] = {**fields["state"], "timestamp": when}
        made.append(make_record(record.stream_id, record.seq, record.type, fields, when,
                                event_id=record.id))  # fmt: skip
    return made


def finished(days: float, end: Any = None, tasks: int = 2) -> tuple[str, list[EventRecord]]:
    run = RunBuilder()
    events = run.complete_run(tasks=tasks)
    if end is not None:
        events[-1] = make_record(run.run_id, events[-1].seq, "flow_run.state",
                                 {"state": {"type": end.type, "name": end.name, "timestamp": "",
                                            "message": "boom", "traceback": None},
                                  "result": None})  # fmt: skip
    return run.run_id, aged(events, days)


def artifact_of(run_id: str, seq: int, key: str, days: float) -> EventRecord:
    fields = {"artifact_id": f"art-{key}", "key": key, "artifact_type": "markdown",
              "data": "# report", "description": None, "task_run_id": None}  # fmt: skip
    return aged([make_record(run_id, seq, "artifact.created", fields)], days)[0]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "flowbus.db"


async def fill(path: Path) -> dict[str, str]:
    store = SqliteEventStore(path)
    await store.open()
    runs: dict[str, str] = {}
    try:
        ends = [("old", 40, None), ("old-2", 35, None), ("recent", 1, None),
                ("old-failed", 40, Failed()), ("older-crashed", 100, Crashed())]  # fmt: skip
        for name, days, end in ends:
            run_id, events = finished(days, end)
            await store.append(events)
            runs[name] = run_id
        for index in range(300):  # bulk, for the disk given back
            run_id, events = finished(50, tasks=5)
            await store.append(events)
            runs[f"bulk-{index}"] = run_id
        # Failed long ago, retried now (``flowbus runs retry``): its next attempt replays the
        # results the failed one recorded, so neither the run nor its files may go.
        run_id, events = finished(40, Failed())
        retried = make_record(run_id, events[-1].seq + 1, "flow_run.state",
                              {"state": state_dict(AwaitingRetry()), "result": None})  # fmt: skip
        await store.append([*events, retried])
        runs["retried"] = run_id
        open_run = RunBuilder()
        await store.append(aged([open_run.created(), open_run.state(Running())], 60))
        runs["open"] = open_run.run_id
        run_id, events = finished(45)
        events.insert(-1, artifact_of(run_id, events[-1].seq, "weekly-report", 45))
        events[-1] = aged([make_record(run_id, events[-1].seq + 1, "flow_run.state",
                                       {k: v for k, v in events[-1].data.items()
                                        if k not in ENVELOPE})], 45)[0]  # fmt: skip
        await store.append(events)
        runs["artifact"] = run_id
    finally:
        await store.close()
    return runs


def cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWBUS_HOME": str(path.parent)}
    env.pop("FLOWBUS_STORE_URL", None)
    return subprocess.run([sys.executable, "-m", "flowbus", "store", *args], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def present(path: Path, runs: dict[str, str]) -> set[str]:
    async def read() -> set[str]:
        store = SqliteEventStore(path)
        await store.open()
        try:
            return {name for name, run_id in runs.items()
                    if await store.get_flow_run(run_id) is not None}  # fmt: skip
        finally:
            await store.close()

    return asyncio.run(read())


def result_files(store_path: Path, runs: dict[str, str], *names: str) -> dict[str, Path]:
    """A stored result of each named run, where deployed runs keep theirs (result storage's
    default under the home: ``results/runs/<run id>/<task run id>``)."""
    made = {}
    for name in names:
        stored = store_path.parent / "results" / "runs" / runs[name] / "task-run-1"
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_bytes(b"sealed result bytes")
        made[name] = stored
    return made


def test_prune_by_hand_keeps_what_is_still_wanted(store_path: Path) -> None:
    runs = asyncio.run(fill(store_path))
    stored = result_files(store_path, runs, "old", "recent", "old-failed", "retried")
    dry = cli(store_path, "prune", "--older-than", "30d", "--keep-failed", "90d", "--dry-run",
              "--json")  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    would = json.loads(dry.stdout)
    assert would["dry_run"] and would["runs"] == 303 and would["kept_pinned"] == 1
    assert present(store_path, runs) == set(runs)  # a dry run removes nothing

    size_before = store_path.stat().st_size
    done = cli(store_path, "prune", "--older-than", "30d", "--keep-failed", "90d", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"] == 303
    assert json.loads(done.stdout)["result_folders"] == 1
    assert present(store_path, runs) == {"recent", "old-failed", "open", "artifact", "retried"}
    # A pruned run's results go with it; a kept run's stay (a retried one's included).
    assert not stored["old"].parent.exists()
    assert stored["recent"].exists() and stored["old-failed"].exists()
    assert stored["retried"].exists()
    assert store_path.stat().st_size < size_before  # freed pages went back to the disk
    verify = cli(store_path, "verify")
    assert verify.returncode == 0 and "match" in verify.stdout
    again = cli(store_path, "prune", "--older-than", "30d", "--keep-failed", "90d", "--json")
    assert json.loads(again.stdout)["runs"] == 0  # nothing removed twice

    bad_ages = [
        ["--older-than", "-3d"],
        ["--older-than", "0d"],
        ["--older-than", "5000000d"],
        ["--older-than", "soon"],
        ["--older-than", "30d", "--keep-failed", "1d"],
    ]
    for bad in bad_ages:
        refused = cli(store_path, "prune", *bad)
        assert refused.returncode == 2, (bad, refused.stdout, refused.stderr)
    assert present(store_path, runs) == {"recent", "old-failed", "open", "artifact", "retried"}


async def test_a_prune_while_another_holds_the_lease_is_refused(store_path: Path) -> None:
    await fill(store_path)
    store = SqliteEventStore(store_path)
    await store.open()
    try:
        assert await take_lease(store, "prune-elsewhere", datetime.now(UTC)) is None
        with pytest.raises(Exception, match="another prune is running: prune-elsewhere"):
            await prune(store, RetentionPolicy(timedelta(days=30)))
        assert len(await store.list_flow_runs(limit=1000)) == 308  # nothing removed
        # A dry run takes no lease: it may look while another prunes.
        report = await prune(store, RetentionPolicy(timedelta(days=30)), dry_run=True)
        assert report.runs > 0
    finally:
        await store.close()


def test_a_prune_killed_mid_batch_is_carried_on_and_removes_nothing_twice(
    store_path: Path,
) -> None:
    import signal
    import time

    async def bulk() -> list[str]:
        store = SqliteEventStore(store_path)
        await store.open()
        try:
            made = []
            for _ in range(1500):
                run_id, events = finished(50, tasks=3)
                await store.append(events)
                made.append(run_id)
            return made
        finally:
            await store.close()

    runs = asyncio.run(bulk())

    def left() -> int:
        return len(present(store_path, {r: r for r in runs}))

    env = {**os.environ, "FLOWBUS_HOME": str(store_path.parent),
           "FLOWBUS_PRUNE_LEASE_SECONDS": "3"}  # fmt: skip
    env.pop("FLOWBUS_STORE_URL", None)
    pruning = subprocess.Popen([sys.executable, "-m", "flowbus", "store", "prune",
                                "--older-than", "30d", "--batch", "20"], env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while left() == len(runs) and pruning.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        pruning.send_signal(signal.SIGKILL)
    finally:
        pruning.wait()
    remaining = left()
    assert remaining % 20 == 0  # whole batches only: a run is whole or gone
    assert verified(store_path)
    time.sleep(3.5)  # the killed prune's lease runs out
    again = subprocess.run([sys.executable, "-m", "flowbus", "store", "prune", "--older-than",
                            "30d", "--json"], env=env, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["runs"] == remaining  # the rest, none twice
    assert left() == 0 and verified(store_path)


def verified(path: Path) -> bool:
    return cli(path, "verify").returncode == 0


def test_the_leader_prunes_on_a_timer_by_each_deployments_policy(stack: Stack) -> None:
    """A deployment whose runs go seconds after they end, one that keeps them forever, and
    the default (FLOWBUS_RETENTION_DAYS) for the rest: the leader's pass applies each."""
    stack.env.update({"FLOWBUS_RETENTION_INTERVAL": "1", "FLOWBUS_RETENTION_DAYS": "30"})
    stack.start_orchestrator()
    stack.start_agent("agent-1")
    archive = stack.root / "archive-of-brief"
    brief = stack.cli("deploy", "flows.py:quick", "-n", "brief", "--retention-days", "0.00003",
                      "--archive", str(archive))  # fmt: skip
    said = "".join(brief.stdout.split())  # wrapped at the terminal's width, even in the path
    assert "".join(f"pruned 3e-05 days after they end, archived to {archive} first".split()) in said
    # Days kept when a later deploy changes only the rest; no days at all is refused.
    again = stack.cli("deploy", "flows.py:quick", "-n", "brief", "--keep-failed-days", "1")
    assert "pruned 3e-05 days after they end" in again.stdout
    dayless = stack.cli("deploy", "flows.py:quick", "-n", "other", "--keep-failed-days", "1",
                        check=False)  # fmt: skip
    assert dayless.returncode == 2 and "--retention-days" in dayless.stdout + dayless.stderr
    stack.cli("deploy", "flows.py:quick", "-n", "keep", "--retention-days", "forever")
    bad = stack.cli("deploy", "flows.py:quick", "-n", "bad", "--retention-days", "-1",
                    check=False)  # fmt: skip
    assert bad.returncode == 2 and "retention-days" in bad.stdout + bad.stderr

    def runs(deployment: str) -> list[Any]:
        return stack.with_store(lambda s: s.list_flow_runs(deployment=deployment, limit=50))

    for deployment in ("quick/brief", "quick/keep"):
        for _ in range(3):
            stack.cli("run", deployment)

    def kept_ended() -> bool:
        kept = runs("quick/keep")
        return len(kept) == 3 and all(r.state_type == "COMPLETED" for r in kept)

    wait_until(kept_ended, 60, "the kept runs to end")
    wait_until(lambda: runs("quick/brief") == [], 60, "the brief deployment's runs to go")
    assert len(runs("quick/keep")) == 3
    # The brief deployment's runs went to its own archive first, and come back from it; the
    # leader's next passes leave them there (an import holds them for --keep-days).
    written = sorted(archive.rglob("*.jsonl.gz"))
    assert written, list(archive.rglob("*"))
    imported = stack.cli("store", "import", str(archive), "--keep-days", "1")
    assert "retention leaves their runs for 1 days" in " ".join(imported.stdout.split())
    assert len(runs("quick/brief")) == 3
    time.sleep(3)  # what must not happen has no condition to wait for: three passes of 1 s
    assert len(runs("quick/brief")) == 3
    assert "match" in stack.cli("store", "verify").stdout


def test_prune_archives_first_and_import_brings_the_runs_back(
    store_path: Path, tmp_path: Path
) -> None:
    runs = asyncio.run(fill(store_path))
    archive = tmp_path / "archive"
    done = cli(store_path, "prune", "--older-than", "30d", "--archive", str(archive), "--json")
    assert done.returncode == 0, done.stderr
    pruned = json.loads(done.stdout)["runs"]
    assert pruned == 304  # the failed run too: no --keep-failed
    days = sorted(p.name for p in archive.iterdir())
    assert len(days) == 4 and all(len(d) == 10 for d in days)  # 100, 50, 40 and 35 days ago
    assert present(store_path, runs) == {"recent", "open", "artifact", "retried"}

    imported = cli(store_path, "import", str(archive))
    assert imported.returncode == 0, imported.stderr
    assert present(store_path, runs) == set(runs)
    assert cli(store_path, "verify").returncode == 0
    again = cli(store_path, "import", str(archive))  # nothing twice
    assert "imported 0 events" in again.stdout
    # Held from retention for --keep-days (7 by default): a prune now leaves them.
    held = cli(store_path, "prune", "--older-than", "30d", "--json")
    assert json.loads(held.stdout)["runs"] == 0 and present(store_path, runs) == set(runs)
    bad = cli(store_path, "import", str(archive), "--keep-days", "0")
    assert bad.returncode == 2 and "--keep-days" in bad.stdout + bad.stderr

    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"not gzip")
    refused = cli(store_path, "import", str(broken))
    assert refused.returncode == 1 and "not a gzip-compressed archive" in refused.stdout + (
        refused.stderr
    )
    missing = cli(store_path, "import", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "no archive at" in missing.stdout + missing.stderr


async def test_an_import_hold_lasts_its_days_then_goes(store_path: Path) -> None:
    from flowbus.engine.archive import HOLD
    from flowbus.engine.documents import save_document
    from flowbus.engine.retention import forget_expired_holds, pinned_runs

    store = SqliteEventStore(store_path)
    await store.open()
    try:
        for name, runs, days in (("past", ["run-a"], -1), ("future", ["run-b"], 1)):
            until = (NOW + timedelta(days=days)).isoformat()
            await save_document(store, HOLD, name, {"runs": runs, "until": until})
        assert await pinned_runs(store, NOW) == {"run-b"}
        assert await forget_expired_holds(store, NOW) == 1
        assert [d.name for d in await store.list_documents(HOLD)] == ["future"]
    finally:
        await store.close()
