"""The sequence rule every SQL backend applies before appending: each event must be the next of
its stream; one already recorded at its place (same id) is skipped; anything else is refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from flowbus.engine.errors import SequenceError
from flowbus.engine.records import EventRecord

#: The heads of the given streams (a stream with no events may be left out: its head is 0).
LoadHeads = Callable[[list[str]], Awaitable[dict[str, int]]]
EventIdAt = Callable[[str, int], Awaitable[str | None]]


async def check_sequences(
    records: Sequence[EventRecord],
    cached_heads: dict[str, int],
    load_heads: LoadHeads,
    event_id_at: EventIdAt,
    assume_new: bool = False,
) -> tuple[list[EventRecord], dict[str, int]]:
    """The records to append, and the heads of their streams after them.

    ``cached_heads`` are heads known from earlier appends; another process may have appended
    since, so a record beyond the cached head makes the head be read again, and a record at a
    place taken meanwhile is caught by the database's unique key (the append is retried).
    The heads neither cached nor new are read in one ``load_heads`` call: a run's commit often
    opens several streams (its task runs), and each read was a round trip of its own before
    the transaction. With ``assume_new``, a stream not cached whose first record here is its
    first event (seq 1) is taken as new without asking: should it exist after all, the unique
    key refuses the append, and the caller retries without the assumption. ``event_id_at``
    asks the database. Raises ``SequenceError`` for a gap or a duplicate under another id.
    """
    found = _all_next(records, cached_heads, assume_new)
    if found is not None:
        return found
    return await _check_with_reads(records, cached_heads, load_heads, event_id_at, assume_new)


def _all_next(
    records: Sequence[EventRecord], cached_heads: dict[str, int], assume_new: bool
) -> tuple[list[EventRecord], dict[str, int]] | None:
    """The common case, without a read: every record is the next of its stream as known here
    (a recorder's batch, a decision's events). None when any is not."""
    heads: dict[str, int] = {}
    for record in records:
        stream = record.stream_id
        head = heads.get(stream)
        if head is None:
            head = cached_heads.get(stream)
            if head is None:
                if not (assume_new and record.seq == 1):
                    return None
                head = 0
        if record.seq != head + 1:
            return None
        heads[stream] = record.seq
    return list(records), heads


async def _check_with_reads(
    records: Sequence[EventRecord],
    cached_heads: dict[str, int],
    load_heads: LoadHeads,
    event_id_at: EventIdAt,
    assume_new: bool,
) -> tuple[list[EventRecord], dict[str, int]]:
    # Which heads must be read: the loop below, run ahead on what is known without asking.
    unknown: set[str] = set()
    known: dict[str, int | None] = {}
    for record in records:
        stream = record.stream_id
        if stream in unknown:
            continue
        if stream not in known:
            head = cached_heads.get(stream)
            known[stream] = 0 if head is None and assume_new and record.seq == 1 else head
        head = known[stream]
        if head is None or record.seq > head + 1:
            # Not cached, or another process (a second orchestrator) appended since: ask.
            unknown.add(stream)
            cached_heads.pop(stream, None)
        elif record.seq == head + 1:
            known[stream] = record.seq
    loaded = await load_heads(sorted(unknown)) if unknown else {}
    base = {stream: loaded.get(stream, 0) if stream in unknown else cached_heads.get(stream, 0)
            for stream in known}  # fmt: skip
    heads: dict[str, int] = {}
    seen: set[str] = set()
    fresh = []
    for record in records:
        stream = record.stream_id
        head = heads.get(stream)
        if head is None:
            head = base[stream]
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
