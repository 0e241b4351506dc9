"""The ledger's runs, indexed by whether they are finished: the janitor's sweep and the purge
look at what is under way and what they drop, not at every run kept (``agents/run_entries.py``).
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from flowbus.agents import ledger as ledger_module
from flowbus.agents.ledger import KEEP_FINISHED, RunLedger
from flowbus.agents.run_entries import RunEntries
from flowbus.agents.run_entry import RunEntry
from flowbus.engine.states import Completed, StateType
from flowbus.engine.store.memory import MemoryEventStore

from .decision_tables import entry
from .test_ledger import created

S = StateType


def run(number: int, state: StateType, finished_at: float | None = None) -> RunEntry:
    finished = finished_at if state.is_terminal else None
    return dataclasses.replace(entry(state), run_id=f"run-{number}", finished_at=finished)


def test_unfinished_holds_only_runs_under_way() -> None:
    entries = RunEntries()
    for number in range(5):
        entries[f"run-{number}"] = run(number, S.COMPLETED, 10.0)
    entries["run-5"] = run(5, S.RUNNING)
    entries["run-6"] = run(6, S.SCHEDULED)
    assert [e.run_id for e in entries.unfinished()] == ["run-5", "run-6"]
    assert len(entries) == 7 and "run-0" in entries and entries["run-0"].state is S.COMPLETED


def test_a_run_that_finishes_in_place_leaves_the_unfinished_and_one_run_again_returns() -> None:
    entries = RunEntries()
    running = entries["run-1"] = run(1, S.RUNNING)
    running.state, running.finished_at = S.COMPLETED, 50.0  # changed in place, not filed
    assert entries.unfinished() == []
    assert entries.drop_finished(older_than=60.0) == 1 and "run-1" not in entries

    failed = entries["run-2"] = run(2, S.FAILED, 50.0)
    failed.state, failed.finished_at = S.SCHEDULED, None  # retried: filed again by the ledger
    entries.refile(failed)
    assert entries.unfinished() == [failed]
    assert entries.drop_finished(older_than=1e9) == 0 and "run-2" in entries


def test_finished_runs_are_dropped_oldest_first_and_only_once_old() -> None:
    entries = RunEntries()
    for number, at in enumerate([10.0, 20.0, 30.0]):
        entries[f"run-{number}"] = run(number, S.COMPLETED, at)
    entries["run-9"] = run(9, S.RUNNING)
    assert entries.drop_finished(older_than=25.0) == 2
    assert sorted(entries) == ["run-2", "run-9"]
    assert entries.drop_finished(older_than=25.0) == 0


def test_beyond_the_cap_the_oldest_finished_runs_go_however_recent() -> None:
    entries = RunEntries()
    for number in range(5):
        entries[f"run-{number}"] = run(number, S.COMPLETED, 100.0 + number)
    entries["run-9"] = run(9, S.RUNNING)
    assert entries.drop_finished(older_than=0.0, keep_at_most=2) == 3
    assert sorted(entries) == ["run-3", "run-4", "run-9"]
    assert entries.drop_finished(older_than=0.0, keep_at_most=2) == 0
    assert entries.drop_finished(older_than=104.0, keep_at_most=2) == 1  # age still counts
    assert sorted(entries) == ["run-4", "run-9"]


def test_a_finished_run_changed_in_place_without_being_filed_is_not_dropped() -> None:
    entries = RunEntries()
    reopened = entries["run-1"] = run(1, S.FAILED, 10.0)
    reopened.state, reopened.finished_at = S.RUNNING, None  # a path that forgot ``refile``
    assert entries.drop_finished(older_than=100.0) == 0
    assert entries.unfinished() == [reopened]


def test_removed_runs_leave_every_index() -> None:
    entries = RunEntries()
    entries["run-1"] = run(1, S.RUNNING)
    entries["run-2"] = run(2, S.COMPLETED, 1.0)
    del entries["run-1"]
    assert entries.pop("run-2") is not None
    assert entries.unfinished() == [] and entries.drop_finished(1e9) == 0 and len(entries) == 0


def test_the_ledger_purges_old_finished_runs_and_keeps_the_rest() -> None:
    ledger = RunLedger(MemoryEventStore())
    now = 10_000.0
    ledger.entries["old"] = dataclasses.replace(
        run(1, S.COMPLETED, now - KEEP_FINISHED - 1), run_id="old"
    )
    ledger.entries["recent"] = dataclasses.replace(run(2, S.COMPLETED, now - 1), run_id="recent")
    ledger.entries["going"] = dataclasses.replace(run(3, S.RUNNING), run_id="going")
    ledger.purge(now)
    assert sorted(ledger.entries) == ["going", "recent"]


async def test_a_finished_run_dropped_by_the_cap_is_read_again_from_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ledger_module, "KEEP_FINISHED_AT_MOST", 1)
    store = MemoryEventStore()
    await store.open()
    ids = ["01a20000-0000-7000-8000-00000000000" + str(n) for n in (1, 2)]
    for run_id in ids:
        await store.append([created(run_id, Completed())])
    ledger = RunLedger(store)
    ledger.authoritative = True
    for run_id in ids:
        assert (await ledger.get(run_id)).state is S.COMPLETED  # type: ignore[union-attr]
    ledger.purge(time.monotonic())
    assert list(ledger.entries) == [ids[1]]  # the newest kept, the other dropped
    again = await ledger.get(ids[0])
    assert again is not None and again.state is S.COMPLETED and ids[0] in ledger.entries
