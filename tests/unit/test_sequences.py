"""The sequence rule of the SQL stores, when several processes append to one stream."""

from __future__ import annotations

import pytest

from flowbus.engine.errors import SequenceError
from flowbus.engine.records import make_record
from flowbus.engine.store.sequences import check_sequences


class Database:
    """The heads another process left, and every read of them."""

    def __init__(self, heads: dict[str, int], ids: dict[tuple[str, int], str] | None = None):
        self.heads = heads
        self.ids = ids or {}
        self.reads: list[list[str]] = []

    async def load_heads(self, streams: list[str]) -> dict[str, int]:
        self.reads.append(streams)
        return {stream: self.heads[stream] for stream in streams if stream in self.heads}

    async def event_id_at(self, stream: str, seq: int) -> str | None:
        return self.ids.get((stream, seq))


async def test_a_head_cached_before_another_process_appended_is_read_again() -> None:
    """Two orchestrators append to one run: one's cached head falls behind the database."""
    database = Database({"r": 3})  # another process appended #2 and #3 after this one cached #1
    cached = {"r": 1}
    record = make_record("r", 4, "log", {})
    fresh, heads = await check_sequences([record], cached, database.load_heads,
                                         database.event_id_at)  # fmt: skip
    assert fresh == [record] and heads == {"r": 4}


async def test_the_heads_not_known_are_read_in_one_call() -> None:
    """A run's commit opens several streams (its task runs): one read for all of them."""
    database = Database({"a": 2, "b": 5})
    records = [make_record("a", 3, "log", {}), make_record("b", 6, "log", {}),
               make_record("c", 1, "log", {}), make_record("a", 4, "log", {})]  # fmt: skip
    fresh, heads = await check_sequences(records, {}, database.load_heads, database.event_id_at)
    assert fresh == records and heads == {"a": 4, "b": 6, "c": 1}
    assert database.reads == [["a", "b", "c"]]


async def test_a_new_stream_is_not_asked_for_when_it_may_be_assumed_new() -> None:
    database = Database({"r": 7})
    records = [make_record("r", 8, "log", {}), make_record("t", 1, "log", {}),
               make_record("t", 2, "log", {})]  # fmt: skip
    fresh, _ = await check_sequences(records, {"r": 7}, database.load_heads,
                                     database.event_id_at, assume_new=True)  # fmt: skip
    assert fresh == records and database.reads == []


async def test_a_stale_head_behind_a_recorded_event_is_read_again() -> None:
    """The first event is one recorded already; the next is beyond the cached head because
    another process appended meanwhile: the head is read, not a gap reported."""
    first = make_record("r", 2, "log", {})
    database = Database({"r": 4}, {("r", 2): first.id})
    later = make_record("r", 5, "log", {})
    fresh, heads = await check_sequences([first, later], {"r": 2}, database.load_heads,
                                         database.event_id_at)  # fmt: skip
    assert fresh == [later] and heads == {"r": 5}


async def test_a_gap_and_a_duplicate_under_another_id_are_refused() -> None:
    database = Database({"r": 3}, {("r", 3): "someone-else"})
    for record in (make_record("r", 5, "log", {}), make_record("r", 3, "log", {})):
        with pytest.raises(SequenceError):
            await check_sequences([record], {}, database.load_heads, database.event_id_at)
