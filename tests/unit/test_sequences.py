"""The sequence rule of the SQL stores, when several processes append to one stream."""

from __future__ import annotations

from flowbus.engine.records import make_record
from flowbus.engine.store.sequences import check_sequences


async def test_a_head_cached_before_another_process_appended_is_read_again() -> None:
    """Two orchestrators append to one run: one's cached head falls behind the database."""
    database = {"r": 3}  # another process appended #2 and #3 after this one cached #1

    async def load_head(stream: str) -> int:
        return database[stream]

    async def event_id_at(stream: str, seq: int) -> str | None:
        return None

    cached = {"r": 1}
    record = make_record("r", 4, "log", {})
    fresh, heads = await check_sequences([record], cached, load_head, event_id_at)
    assert fresh == [record] and heads == {"r": 4}
