"""Cache keys and the on-disk result store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from flowbus import task_input_hash
from flowbus.engine.caching import CacheStore, stable_hash


def context(task_key: str) -> SimpleNamespace:
    return SimpleNamespace(task=SimpleNamespace(task_key=task_key))


def test_equal_inputs_give_equal_keys_regardless_of_dict_order() -> None:
    a = task_input_hash(context("m.t"), {"x": 1, "y": [1, 2], "z": {"b": 1, "a": 2}})
    b = task_input_hash(context("m.t"), {"z": {"a": 2, "b": 1}, "y": [1, 2], "x": 1})
    assert a == b
    assert a is not None and len(a) == 64


def test_different_inputs_or_tasks_give_different_keys() -> None:
    base = task_input_hash(context("m.t"), {"x": 1})
    assert task_input_hash(context("m.t"), {"x": 2}) != base
    assert task_input_hash(context("m.other"), {"x": 1}) != base
    assert task_input_hash(context("m.t"), {"x": "1"}) != base


def test_inputs_json_cannot_hold_are_hashed_by_pickle() -> None:
    key = stable_hash({"path": Path("/tmp/x")})
    assert key == stable_hash({"path": Path("/tmp/x")})
    assert key != stable_hash({"path": Path("/tmp/y")})


def test_unpicklable_inputs_mean_no_key() -> None:
    assert stable_hash({"fn": lambda: 1}) is None


def test_result_store_round_trip_and_expiry(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.write("k", {"rows": 3}, timedelta(seconds=60))
    hit = store.read("k")
    assert hit is not None and hit.value == {"rows": 3}
    later = datetime.now(UTC) + timedelta(seconds=61)
    assert store.read("k", now=later) is None
    assert store.read("missing") is None


def test_result_store_ignores_a_corrupt_file(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    (tmp_path / "bad").write_bytes(b"not a pickle")
    assert store.read("bad") is None
