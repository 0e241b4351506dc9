"""Replay and recorded results: the pure parts (which entries a stream gives, which call matches,
how a result is encoded) and an in-process flow retry that replays completed tasks."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest

from flowbus import flow, task
from flowbus.engine.records import make_record
from flowbus.engine.replay import ReplayEntry, ReplayTable, replay_entries
from flowbus.engine.results import (
    INLINE_LIMIT,
    OutputStorage,
    ResultMissing,
    decode_output,
    encode_output,
    is_exact_json,
)

from .engine_helpers import capture

STATE = {"type": "COMPLETED", "name": "Completed", "timestamp": "2026-11-30T00:00:00Z"}


RUN = "01a20000-0000-7000-8000-0000000000aa"


def tid(name: str) -> str:
    """A task run's id, named by a letter in the tables below."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, name))


def event(kind: str, **data: Any) -> Any:
    return make_record(RUN, 1, kind, data)


def created(task_run_id: str, position: int, input_hash: str | None = "h") -> Any:
    return event("task_run.created", task_run_id=tid(task_run_id), task_key="m.step",
                 name="step", position=position, input_hash=input_hash, state=STATE)  # fmt: skip


def completed(task_run_id: str, value: Any, **extra: Any) -> Any:
    return event("task_run.state", task_run_id=tid(task_run_id), state=STATE,
                 output={"json": value}, **extra)  # fmt: skip


def test_the_latest_completion_of_each_identity_is_replayable() -> None:
    failed = {**STATE, "type": "FAILED", "name": "Failed"}
    entries = replay_entries([
        event("flow_run.state", state=STATE, attempt=1),
        created("a", 0), completed("a", 1),
        created("b", 1), event("task_run.state", task_run_id=tid("b"), state=failed),
        event("flow_run.state", state=STATE, attempt=2),
        created("c", 0), completed("c", 1, replay_of=tid("a"), replayed_from=1),
        created("d", 1), completed("d", 2),
    ])  # fmt: skip
    assert [(e.position, e.output, e.attempt, e.task_run_id) for e in entries] == [
        (0, {"json": 1}, 1, tid("a")),  # replayed in attempt 2: still attempt 1's result
        (1, {"json": 2}, 2, tid("d")),
    ]


def test_a_call_matches_by_task_position_and_inputs() -> None:
    entry = ReplayEntry("m.step", 0, "h", {"json": 1}, 1, "a", "step-0")
    table = ReplayTable([entry])
    assert table.match("m.step", 0, "h") is entry
    assert table.match("m.step", 0, "other inputs") is None
    assert table.match("m.step", 1, "h") is None
    assert table.match("m.other", 0, "h") is None
    assert (
        ReplayTable([ReplayEntry("m.step", 0, None, {}, 1, "a", "s")]).match("m.step", 0, None)
        is None
    )


@pytest.mark.parametrize(
    ("value", "exact"),
    [
        ({"a": [1, 2.5, None, True, "x"]}, True),
        ((1, 2), False),
        ({1: "int key"}, False),
        (float("nan"), False),
        (dt.date(2026, 11, 30), False),
        ([[[]]], True),
    ],
)
def test_only_values_json_gives_back_unchanged_are_inline(value: Any, exact: bool) -> None:
    assert is_exact_json(value) is exact


def test_results_that_are_not_json_or_too_large_go_to_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWBUS_RESULT_STORAGE", str(tmp_path / "results"))
    storage = OutputStorage(str(tmp_path / "results"))
    assert encode_output([1, "two"], "run/a", storage) == {"json": [1, "two"]}
    when = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    output = encode_output({"at": when}, "run/b", storage)
    assert output["json"] == {"at": "2026-11-30T00:00:00Z"}  # a rendering for other languages
    assert decode_output(output) == {"at": when}  # the exact value, from storage
    big = "x" * (INLINE_LIMIT + 1)
    output = encode_output(big, "run/c", storage)
    assert "json" not in output and decode_output(output) == big
    Path(output["ref"]).unlink()
    with pytest.raises(ResultMissing):
        decode_output(output)
    assert not list((tmp_path / "results" / "run").glob("*.partial-*"))


def test_a_flow_retry_replays_the_tasks_that_completed(tmp_path: Path) -> None:
    """With results recorded (``persist_result=True``), a retry of the flow body returns the
    results of the tasks that completed in the try before instead of running them."""
    bodies: list[str] = []

    @task
    def step(name: str) -> str:
        bodies.append(name)
        return name.upper()

    @task(replay=False)
    def always(name: str) -> str:
        bodies.append(name)
        return name

    @flow(retries=1, persist_result=True)
    def flaky() -> list[str]:
        out = [step("one"), always("side effect"), step("two")]
        if len(bodies) < 4:
            raise RuntimeError("the first try fails after its tasks")
        return out

    result, recorded = capture(flaky)
    assert result == ["ONE", "side effect", "TWO"]
    assert bodies == ["one", "side effect", "two", "side effect"]
    assert recorded.task_states("step") == [
        "Pending", "Running", "Completed", "Pending", "Running", "Completed",
        "Pending", "Replayed", "Pending", "Replayed",
    ]  # fmt: skip
    [flow_completed] = [d for d in recorded.of_type("flow_run.state") if d.get("output")]
    assert flow_completed["output"] == {"json": ["ONE", "side effect", "TWO"]}


def test_a_flow_retry_replays_a_subflow_that_completed() -> None:
    bodies: list[str] = []

    @flow
    def child(n: int) -> int:
        bodies.append("child")
        return n * 2

    @flow(retries=1, persist_result=True)
    def parent() -> int:
        doubled = child(21)
        if bodies.count("child") == 1 and "failed" not in bodies:
            bodies.append("failed")
            raise RuntimeError("fails after its subflow, once")
        return doubled

    result, recorded = capture(parent)
    assert result == 42
    assert bodies == ["child", "failed"]  # the retry replayed the subflow
    children = [d for d in recorded.of_type("flow_run.created") if d["parent_run_id"]]
    assert [d["position"] for d in children] == [0, 0]
    last = [d["state"]["name"] for d in recorded.of_type("flow_run.state")
            if d["stream_id"] == children[1]["stream_id"]]  # fmt: skip
    assert last == ["Replayed"]
