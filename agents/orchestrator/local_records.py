"""The orchestrator's side of the local lane (``agents/local_lane.py``): the events of the
agent in its own process, recorded without a trip through JetStream.

Each event is checked for what the recorder would refuse of an event this process's engine
built (a store-only type, too large), admitted by the ledger (its attempt must hold the run),
committed by the shared group commit, counted, and announced on the events stream. Only while
this orchestrator leads and its recorder is not catching up with a restored store: otherwise
the lane publishes its events for the recorder to pull, as any agent does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from flowbus.agents import telemetry
from flowbus.agents.fenced_streams import store_only
from flowbus.agents.ledger import RunLedger
from flowbus.agents.orchestrator.outbox import Announcer
from flowbus.agents.recorder import Recorder, RecorderSettings
from flowbus.engine.records import EventRecord


class LocalRecords:
    """Records the local agent's events in this process (``LocalRecorder``)."""

    def __init__(
        self,
        ledger: RunLedger,
        announcer: Announcer,
        recorder: Callable[[], Recorder | None],
        counts: Counter[str],
    ) -> None:
        self.ledger = ledger
        self.announcer = announcer
        #: The leader's recorder of this term (None while not leading).
        self.recorder = recorder
        self.counts = counts

    def records_here(self) -> bool:
        recorder = self.recorder()
        return (
            recorder is not None
            and not recorder.stopping
            and self.ledger.authoritative
            and (recorder.catch_up is None or recorder.catch_up.caught_up)
        )

    async def record_here(self, items: list[tuple[EventRecord, tuple[str, int]]]) -> list[int]:
        """Commit what may be committed of ``items`` and announce it; returns the indexes of
        the items this lane does not record (malformed, of a store-only type, too large, or of
        an attempt that no longer holds its run): published instead, the recorder dead-letters
        them with the reason. Raises, having written nothing, when the store refuses the
        batch."""
        recorder = self.recorder()
        limit = (recorder.settings if recorder else RecorderSettings()).max_message_bytes
        checked: list[tuple[int, EventRecord, tuple[str, int]]] = []
        elsewhere: list[int] = []
        for index, (record, fence) in enumerate(items):
            if _fit(record, limit):
                checked.append((index, record, fence))
            else:
                elsewhere.append(index)
        admitted, fenced = await self.ledger.admit([(rec, fence) for _, rec, fence in checked])
        elsewhere += [checked[index][0] for index, _ in fenced]
        good = [checked[i][1] for i in admitted]
        if not good:
            return sorted(elsewhere)
        try:
            await self.ledger.writer.append(good)
        except BaseException:
            await self.ledger.reload({r.stream_id for r in good} & set(self.ledger.entries))
            raise
        telemetry.recorded(good, self.ledger.queued_at)
        self.counts["recorded_here"] += len(good)
        self.announcer(good)
        return sorted(elsewhere)


def _fit(record: EventRecord, limit: int) -> bool:
    """Whether the event is one the recorder would record: of a type an agent may publish,
    and no larger than it takes (``limit`` bytes). It is not validated again: the engine of
    this process built it (``engine/records.py``: every builder's output is pinned to its
    model by a test), as a run by hand writes its events; what comes off the wire is."""
    return not store_only(record.type) and len(record.body()) <= limit


__all__ = ["LocalRecords"]
