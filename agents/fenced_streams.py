"""Which run streams only a fenced agent may write, and which event types the wire may not carry.

A run of a deployment is run by an agent that claimed it, and every event that agent publishes
carries the claim's fence (``Flowbus-Run``/``Flowbus-Attempt``, checked by the ledger). So an
event of such a run *without* a fence was not published by its holder: the recorder refuses it,
whoever sent it. The same holds for the subflows under a deployment's run (their events carry
the root run's fence). Runs by hand (``deployment`` None, no deployed ancestor) keep recording
without a fence, as before.

Store-only types (deployments, documents, automations) are written by the orchestrator and the
API into the store itself; the events stream carries them to subscribers with
``Flowbus-Recorded``, never for recording.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from flowbus.engine.event_types import RUN_EVENT_TYPES, EventType
from flowbus.engine.events import FlowRunCreated
from flowbus.engine.records import EventRecord
from flowbus.engine.store import EventStore

#: How deep a chain of subflows is followed to its root before the answer is "fenced".
MAX_DEPTH: Final = 64


def store_only(event_type: str) -> bool:
    """Whether events of this type are written to the store only by flowbus itself (never
    recorded from the events stream)."""
    return event_type not in RUN_EVENT_TYPES


class FencedStreams:
    """Whether a run stream needs a fence, remembered per stream (a run of a deployment stays
    one, a run by hand stays one), for the last ``size`` streams asked about."""

    def __init__(self, store: EventStore, size: int = 65536) -> None:
        self.store = store
        self.size = size
        self._known: OrderedDict[str, bool] = OrderedDict()

    def _remember(self, stream_id: str, fenced: bool) -> bool:
        self._known[stream_id] = fenced
        self._known.move_to_end(stream_id)
        while len(self._known) > self.size:
            self._known.popitem(last=False)
        return fenced

    async def required(self, record: EventRecord) -> bool:
        """Whether ``record`` may be recorded only with a fence (its stream is a deployment's run
        or a subflow under one)."""
        known = self._known.get(record.stream_id)
        if known is not None:
            return known
        if record.type == EventType.FLOW_RUN_CREATED:
            created = record.typed()
            if isinstance(created, FlowRunCreated):
                parent = str(created.parent_run_id) if created.parent_run_id else None
                fenced = created.deployment is not None or await self._run_fenced(parent, 1)
                return self._remember(record.stream_id, fenced)
        return await self._run_fenced(record.stream_id, 0)

    async def _run_fenced(self, run_id: str | None, depth: int) -> bool:
        if run_id is None:
            return False
        known = self._known.get(run_id)
        if known is not None:
            return known
        if depth > MAX_DEPTH:
            return True  # a chain this long is no run by hand: only a holder may write it
        run = await self.store.get_flow_run(run_id)
        if run is None:
            return False  # not a run the store knows: nothing of a deployment to protect
        fenced = run.deployment is not None or await self._run_fenced(run.parent_run_id, depth + 1)
        return self._remember(run_id, fenced)
