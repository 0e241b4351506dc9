"""Waiting for runs to end: ``flowbus.api.wait`` is answered once the store holds a run's final
state, in one request.

A client that follows the events stream sees a run's final state before the store holds it,
and then has to ask whether it is recorded: two hops after the event, plus the subscription
and the reads that find what was published before it looked. Here the orchestrator answers
from its own commits: the leader's recorder commits the final state and the waiters of that
run are answered from the committed record, without a read. An orchestrator that does not
record (a standby) reads the heads of the runs waited on once per tick, and a run's view
whenever its head moved; the leader does too, but seldom (its own commits answer its waits).

A run that ends Crashed may be queued again at once (its flow has retries left, or its lease
was lost and it is handed back): Crashed counts as its end only once it has lasted
``settle`` seconds with nothing after it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from flowbus.agents.recorded_waits import forget
from flowbus.engine.errors import StoreError
from flowbus.engine.event_types import EventType
from flowbus.engine.records import EventRecord
from flowbus.engine.states import TERMINAL_TYPES, StateType
from flowbus.engine.store import EventStore
from flowbus.engine.store.views import FlowRunView

log = structlog.get_logger("flowbus.orchestrator")

#: How often a standby reads the heads of the runs waited on.
TICK_SECONDS = 0.05
#: How often the leader does: it records every run's events itself, so its commits answer its
#: waits; its reads only catch what another process wrote (a command on the store, say).
LEADER_TICK_SECONDS = 1.0
#: How many runs' ends committed here are remembered for waits that come after them.
REMEMBERED_ENDS = 10_000
#: How long a Crashed state must last, with nothing after it, to count as the run's end.
CRASH_SETTLE_SECONDS = 1.0
_FINAL = frozenset(t.value for t in TERMINAL_TYPES)


@dataclass(frozen=True)
class RunEnd:
    """A run's state as a wait answers it."""

    state_type: str
    state_name: str
    message: str | None
    result: str | None
    #: When the state was entered (epoch seconds): how long a Crashed has lasted.
    entered: float
    #: The state's event in the run's stream (0: read from the store's view).
    seq: int = 0

    @property
    def final(self) -> bool:
        return self.state_type in _FINAL

    @classmethod
    def of_view(cls, view: FlowRunView) -> RunEnd:
        return cls(view.state_type, view.state_name, view.state_message, view.result,
                   _epoch(view.state_timestamp))  # fmt: skip

    @classmethod
    def of_record(cls, record: EventRecord) -> RunEnd | None:
        """The state a flow run's state event enters (None for any other event)."""
        if record.type != EventType.FLOW_RUN_STATE:
            return None
        state: dict[str, Any] = record.data["state"]
        return cls(state["type"], state["name"], state.get("message"), record.data.get("result"),
                   _epoch(state["timestamp"]), record.seq)  # fmt: skip


def settled(end: RunEnd, now: float, settle: float) -> bool:
    """Whether ``end`` is the run's end: final, and (for Crashed) lasted ``settle`` seconds."""
    if not end.final:
        return False
    return end.state_type != StateType.CRASHED.value or now - end.entered >= settle


class FinalWaits:
    """The runs this orchestrator's clients wait on to end."""

    def __init__(
        self,
        store: EventStore,
        tick: float = TICK_SECONDS,
        settle: float = CRASH_SETTLE_SECONDS,
        clock: Callable[[], float] = time.time,
        leading: Callable[[], bool] = lambda: False,
        head_of: Callable[[str], tuple[StateType, int] | None] = lambda run_id: None,
        committing: Callable[[str], bool] = lambda run_id: False,
    ) -> None:
        """``head_of(run_id)``: the run's state and last event in the leader's ledger, if it
        holds the run (it follows every orchestrator's commits, and is never behind its own).
        ``committing(run_id)``: whether this process is committing events of the run now
        (``BatchWriter.committing``): the commit answers the wait (``committed``)."""
        self.store = store
        self.head_of = head_of
        self.committing = committing
        #: The last runs this process committed an end of (most recent last): a wait that
        #: comes after the end is answered without reading the store.
        self._ended: collections.OrderedDict[str, RunEnd] = collections.OrderedDict()
        self.tick = tick
        self.leading = leading
        self.settle = settle
        self.clock = clock
        self._waiting: dict[str, list[asyncio.Future[RunEnd]]] = defaultdict(list)
        #: The head last read of each waited-on run (a standby reads a view when it moves).
        self._heads: dict[str, int] = {}
        #: Runs whose last state is Crashed: read again once it has lasted ``settle``.
        self._crashed: dict[str, float] = {}
        self._poller: asyncio.Task[None] | None = None
        #: Reads of runs ``committed`` asked for (``_read_soon``).
        self._reads: set[asyncio.Task[None]] = set()

    async def wait(self, run_id: str, timeout: float) -> RunEnd | None:  # noqa: ASYNC109
        """The run's end once the store holds it; its state so far when ``timeout`` runs out
        first; None when the store holds no such run."""
        held = self.head_of(run_id) if self.leading() else None
        ended = self._ended.get(run_id)
        if (
            held is not None
            and ended is not None
            and held[1] == ended.seq  # committed here, and the ledger knows nothing after it
            and ended.state_type != StateType.CRASHED.value  # (a crash must first settle)
        ):
            return ended
        future: asyncio.Future[RunEnd] = asyncio.get_running_loop().create_future()
        self._waiting[run_id].append(future)  # first: a commit from now on answers it
        try:
            now: RunEnd | None = None
            # A run the ledger holds under way: the store holds no end of it yet. One whose end
            # the ledger has and this process is committing: its commit answers; a read now
            # would queue behind that commit, to find the state before it.
            if held is None or (held[0].is_terminal and not self.committing(run_id)):
                heads = await self.store.heads([run_id])
                view = await self.store.get_flow_run(run_id)
                if view is None:
                    return None
                self._heads.setdefault(run_id, heads.get(run_id, 0))
                now = RunEnd.of_view(view)
                if not future.done():
                    self._consider(run_id, now)
            self._start_polling()
            try:
                # Not wait_for(shield(...)): each of its layers is one more turn of a busy
                # loop between the commit and the answer.
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                view = await self.store.get_flow_run(run_id)
                return RunEnd.of_view(view) if view is not None else now
        finally:
            self._forget(run_id, future)

    def committed(self, records: Iterable[EventRecord]) -> None:
        """Events this process just committed: a run's final state answers its waiters."""
        last: dict[str, RunEnd] = {}
        waited: set[str] = set()
        for record in records:
            run_id = record.stream_id
            if run_id in self._waiting:
                # Seen here: the standby's poll need not read the run for this move.
                self._heads[run_id] = max(record.seq, self._heads.get(run_id, 0))
                waited.add(run_id)
            end = RunEnd.of_record(record)
            if end is not None:
                last[run_id] = end
        for run_id, end in last.items():
            self._remember(run_id, end)
        for run_id in waited - last.keys():
            # No state in this commit of a run the ledger has ended (a log line after its
            # end, say): its waiters may have waited for this commit without reading.
            held = self.head_of(run_id) if self.leading() else None
            if held is not None and held[0].is_terminal:
                self._read_soon(run_id)
        last = {run_id: end for run_id, end in last.items() if run_id in self._waiting}
        # Only the last state of each run in the commit: a crash and its requeue (Crashed,
        # AwaitingRetry) are one decision; the Crashed alone is not the run's end.
        for run_id, end in last.items():
            self._consider(run_id, end)

    def _read_soon(self, run_id: str) -> None:
        """Answer ``run_id``'s waiters from the store (read now that it holds this commit)."""

        async def read() -> None:
            try:
                view = await self.store.get_flow_run(run_id)
            except StoreError as exc:  # the poll reads it again
                log.warning("could not read a run waited on", error=str(exc)[:300])
                self._heads.pop(run_id, None)
                return
            if view is not None and run_id in self._waiting:
                self._consider(run_id, RunEnd.of_view(view))

        task = asyncio.get_running_loop().create_task(read())
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    def _remember(self, run_id: str, end: RunEnd) -> None:
        if not end.final:
            self._ended.pop(run_id, None)
            return
        self._ended[run_id] = end
        self._ended.move_to_end(run_id)
        if len(self._ended) > REMEMBERED_ENDS:
            self._ended.popitem(last=False)

    async def close(self) -> None:
        for task in [*self._reads, self._poller]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._poller = None

    def _consider(self, run_id: str, end: RunEnd) -> None:
        """Answer the run's waiters if ``end`` is its end. A Crashed counts once this process
        has seen it last for ``settle`` seconds (a state's own time says nothing of when it
        was recorded: a crash decided late must still leave room for its requeue)."""
        if not end.final:
            self._crashed.pop(run_id, None)
            return
        if end.state_type == StateType.CRASHED.value:
            now = self.clock()
            due = self._crashed.setdefault(run_id, max(now, end.entered) + self.settle)
            if now < due:
                return  # read again when due (``_read_moved``)
        self._crashed.pop(run_id, None)
        for future in self._waiting.get(run_id, ()):
            if not future.done():
                future.set_result(end)

    def _start_polling(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="flowbus-final-waits")

    async def _poll(self) -> None:
        while self._waiting:
            leader = self.leading()
            await asyncio.sleep(max(self.tick, LEADER_TICK_SECONDS) if leader else self.tick)
            try:
                await self._read_moved()
            except StoreError as exc:  # locked, say: the waits run on, read again next tick
                log.warning("could not read the runs waited on", error=str(exc)[:300])

    async def _read_moved(self) -> None:
        """Read the view of each waited-on run whose head moved or whose Crashed is due."""
        waited = list(self._waiting)
        if not waited:
            return
        heads = await self.store.heads(waited)
        now = self.clock()
        for run_id in waited:
            head = heads.get(run_id, 0)
            moved = head != self._heads.get(run_id)
            due = self._crashed.get(run_id, float("inf")) <= now
            if not (moved or due) or run_id not in self._waiting:
                continue
            self._heads[run_id] = head
            view = await self.store.get_flow_run(run_id)
            if view is not None:
                self._consider(run_id, RunEnd.of_view(view))

    def _forget(self, run_id: str, future: asyncio.Future[RunEnd]) -> None:
        forget(self._waiting, run_id, future, self._heads, self._crashed)


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


__all__ = ["CRASH_SETTLE_SECONDS", "FinalWaits", "RunEnd", "settled"]
