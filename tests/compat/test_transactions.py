"""prefect.transactions: rollback hooks, commit hooks, committed keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowbus import flow, task
from flowbus.transactions import CommitMode, get_transaction, transaction


def test_a_failure_rolls_back_the_completed_tasks(tmp_path: Path) -> None:
    target = tmp_path / "side-effect.txt"

    @task
    def write_file(contents: str) -> None:
        target.write_text(contents)

    @write_file.on_rollback
    def del_file(txn):  # type: ignore[no-untyped-def]
        target.unlink()

    @task
    def quality_test() -> None:
        if len(target.read_text()) < 10:
            raise ValueError("not enough data")

    @flow
    def pipeline(contents: str) -> None:
        with transaction():
            write_file(contents)
            quality_test()

    with pytest.raises(ValueError, match="not enough data"):
        pipeline("short")
    assert not target.exists()  # rolled back
    pipeline("long enough contents")
    assert target.read_text() == "long enough contents"


def test_values_set_in_a_task_reach_its_rollback_hook() -> None:
    undone: list[str] = []

    @task
    def insert(row: str) -> str:
        get_transaction().set("row", row)
        return row

    @insert.on_rollback
    def delete_row(txn):  # type: ignore[no-untyped-def]
        undone.append(txn.get("row"))

    @task
    def fail() -> None:
        raise RuntimeError("after both inserts")

    @flow
    def pipeline() -> None:
        with transaction():
            insert("a")
            insert("b")
            fail()

    with pytest.raises(RuntimeError):
        pipeline()
    assert undone == ["b", "a"]  # newest first


def test_commit_hooks_run_when_the_transaction_commits() -> None:
    events: list[str] = []

    @task(on_commit=[lambda txn: events.append("committed")])
    def step() -> int:
        events.append("ran")
        return 1

    @flow
    def pipeline() -> None:
        with transaction():
            step()
            events.append("block ends")

    pipeline()
    assert events == ["ran", "block ends", "committed"]


def test_a_committed_key_skips_the_work_next_time() -> None:
    ran: list[int] = []

    @flow
    def pipeline() -> str:
        with transaction(key="download-2026-11-30") as txn:
            if txn.is_committed():
                return f"skipped: {txn.read()}"
            ran.append(1)
            txn.stage("rows=150")
        return "done"

    assert pipeline() == "done"
    assert pipeline() == "skipped: rows=150"
    assert ran == [1]


def test_a_task_cache_key_is_committed_only_with_its_transaction() -> None:
    ran: list[int] = []

    @task(cache_key_fn=lambda ctx, params: f"load-{params['day']}")
    def load(day: str) -> str:
        ran.append(1)
        return day

    @task
    def broken() -> None:
        raise ValueError("no")

    @flow
    def pipeline(fail: bool) -> str:
        with transaction():
            state = load("mon", return_state=True)
            if fail:
                broken()
        return state.name

    with pytest.raises(ValueError):
        pipeline(True)
    assert pipeline(False) == "Completed"  # the rolled-back run left no cached result
    assert pipeline(False) == "Cached"
    assert len(ran) == 2


def test_eager_and_off_commit_modes() -> None:
    events: list[str] = []

    @task(on_commit=[lambda txn: events.append("commit")],
          on_rollback=[lambda txn: events.append("rollback")])  # fmt: skip
    def step() -> None:
        return None

    @flow
    def eager() -> None:
        with transaction(commit_mode=CommitMode.EAGER):
            step()
            events.append("after step")
            raise ValueError("late")

    with pytest.raises(ValueError):
        eager()
    assert events == ["commit", "after step"]  # committed at once: nothing to roll back
    events.clear()

    @flow
    def off() -> None:
        with transaction(commit_mode=CommitMode.OFF):
            step()

    off()
    assert events == []
