"""The sequence rule every SQL backend applies before appending: each event must be the next of
its stream; one already recorded at its place (same id) is skipped; anything else is refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from flowbus.engine.errors import SequenceError
from flowbus.engine.records import EventRecord

LoadHead = Callable[[str], Awaitable[int]]
EventIdAt = Callable[[str, int], Awaitable[str | None]]


async def check_sequences(
    records: Sequence[EventRecord],
    cached_heads: dict[str, int],
    load_head: LoadHead,
    event_id_at: EventIdAt,
) -> tuple[list[EventRecord], dict[str, int]]:
    """The records to append, and the heads of their streams after them.

    ``cached_heads`` are heads known from earlier appends; another process may have appended
    since, so a record beyond the cached head makes the head be read again, and a record at a
    place taken meanwhile is caught by the database's unique key (the append is retried);
    ``load_head`` and ``event_id_at`` ask the database. Raises ``SequenceError`` for a gap or a
    duplicate under another id.
    """
    heads: dict[str, int] = {}
    seen: set[str] = set()
    fresh = []
    for record in records:
        stream = record.stream_id
        head = heads.get(stream)
        if head is None:
            head = cached_heads.get(stream)
            if head is not None and record.seq > head + 1:
                # Another process (a second orchestrator) appended since: ask the database.
                cached_heads.pop(stream, None)
                head = None
            if head is None:
                head = await load_head(stream)
        if record.seq == head + 1 and record.id not in seen:
            fresh.append(record)
            seen.add(record.id)
            heads[stream] = record.seq
        elif record.id in seen or (
            record.seq <= head and await event_id_at(stream, record.seq) == record.id
        ):
            continue  # the same event again: appending it is a no-op
        else:
            raise SequenceError(stream, head + 1, record.seq)
    return fresh, heads


class HeadsCache(dict[str, int]):
    """The last known sequence number of recently appended streams, bounded in size."""

    LIMIT = 100_000

    def remember(self, heads: dict[str, int]) -> None:
        if len(self) > self.LIMIT:
            self.clear()
        self.update(heads)
