"""Waiting until runs are recorded: ``flowbus.agent.recorded`` asks whether the store holds a
run's events up to a sequence number, and waits a little while it does not.

A busy service waits for hundreds of runs at once (``Client.wait`` for each), and each wait is
asked again until the recorder has caught up. Reading the store once per waiter and tick made
those reads compete with the recorder itself for the store, slowing down the very recording
they wait for. Here one read per tick answers every waiter of this orchestrator, and a commit
made in this process (the leader's recorder, say) answers its waiters at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import structlog

from flowbus.engine.errors import StoreError
from flowbus.engine.records import EventRecord
from flowbus.engine.store import EventStore

log = structlog.get_logger("flowbus.orchestrator")

#: How often the store is read while anyone waits.
TICK_SECONDS = 0.05

_Waiter = tuple[int, "asyncio.Future[int]"]


class RecordedWaits:
    """The runs this orchestrator's clients wait on, read from the store together."""

    def __init__(self, store: EventStore, tick: float = TICK_SECONDS) -> None:
        self.store = store
        self.tick = tick
        self._waiting: dict[str, list[_Waiter]] = defaultdict(list)
        #: The head last read of each waited-on run (what a wait that times out answers).
        self._read: dict[str, int] = {}
        self._poller: asyncio.Task[None] | None = None

    async def wait(self, run_id: str, seq: int, timeout: float) -> int:  # noqa: ASYNC109
        """The run's head (last recorded sequence number) once it reaches ``seq``; or, when
        ``timeout`` runs out first, the head last read."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        waiter = (seq, future)
        self._waiting[run_id].append(waiter)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="flowbus-recorded-waits")
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return self._read.get(run_id, 0)
        finally:
            self._forget(run_id, waiter)

    def committed(self, records: Iterable[EventRecord]) -> None:
        """Events this process just committed: their waiters are answered without a read."""
        for record in records:
            self._answer(record.stream_id, record.seq)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _poll(self) -> None:
        while self._waiting:
            try:
                heads = await self.store.heads(list(self._waiting))
            except StoreError as exc:  # locked, say: the waits run on, asked again next tick
                log.warning("could not read the runs waited on", error=str(exc)[:300])
            else:
                for run_id, head in heads.items():
                    self._answer(run_id, head)
            await asyncio.sleep(self.tick)

    def _answer(self, run_id: str, head: int) -> None:
        waiters = self._waiting.get(run_id)
        if not waiters:
            return
        self._read[run_id] = max(head, self._read.get(run_id, 0))
        for seq, future in waiters:
            if seq <= head and not future.done():
                future.set_result(head)

    def _forget(self, run_id: str, waiter: _Waiter) -> None:
        forget(self._waiting, run_id, waiter, self._read)


def forget(
    waiting: dict[str, list[Any]], run_id: str, waiter: Any, *per_run: dict[str, Any]
) -> None:
    """Take ``waiter`` off ``run_id``'s waiters; with none left, the run is forgotten, in
    ``waiting`` and in each of ``per_run`` (what was kept for it while waited on)."""
    waiters = waiting.get(run_id)
    if waiters is None:
        return
    with contextlib.suppress(ValueError):
        waiters.remove(waiter)
    if not waiters:
        del waiting[run_id]
        for kept in per_run:
            kept.pop(run_id, None)
