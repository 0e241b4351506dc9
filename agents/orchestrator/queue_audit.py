"""The queue audit: every run the leader holds as Scheduled, its request published, must have
that request in its queue's stream, or no agent will ever take it.

The cluster test met two such runs: queued while the runs stream's leader moved (a host's link
had just come back), their writer's publish timed out, and the stream never held their
requests, although the leader believed them published (JetStream may answer a publish sent
again with the same ``Nats-Msg-Id`` as a duplicate of a message it staged and then lost). So
every ``FLOWBUS_QUEUE_AUDIT_INTERVAL`` seconds the leader asks the runs stream how many
requests it holds for each queue; only when it holds fewer than the runs the leader believes
published there does it read the queue's requests (one direct get each), and it publishes
again, under a fresh message id, the request of every such run queued more than an interval
ago that is not there (a request published just now may still be on its way). A copy of a
request that did exist is harmless: a claim refuses it. The decisions are
``decisions.sweeps``'. Before the queues, it audits the store (``store_audit.py``): runs the
leader never learned of are followed from then on.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable

import structlog
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from flowbus.agents.background import BackgroundTasks
from flowbus.agents.decisions.sweeps import audit_due, lost_requests
from flowbus.agents.ledger import RunLedger
from flowbus.agents.orchestrator.outbox import Outbox
from flowbus.agents.orchestrator.store_audit import follow_unknown_runs
from flowbus.agents.run_entry import RunEntry
from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.engine.states import StateType

log = structlog.get_logger("flowbus.orchestrator")

#: At most this many requests are read from one queue in one audit.
SCAN_LIMIT = 200_000

_fresh_ids = itertools.count(1)


class QueueAudit:
    """The leader's check that every published request is still in its queue."""

    def __init__(
        self,
        js: JetStreamContext,
        ledger: RunLedger,
        outbox: Outbox,
        background: BackgroundTasks,
        leading: Callable[[], bool],
        interval: float,
    ) -> None:
        self.js = js
        self.ledger = ledger
        self.outbox = outbox
        self.background = background
        self.leading = leading
        self.interval = interval
        self._audited_at = 0.0
        self._auditing = False

    def start_if_due(self, now: float) -> None:
        """Start an audit in the background when one is due (the sweep does not wait on it)."""
        if self._auditing or now - self._audited_at < self.interval:
            return
        self._audited_at, self._auditing = now, True
        self.background.spawn(self._audit())

    async def _audit(self) -> None:
        try:
            await follow_unknown_runs(self.ledger)
            by_queue: dict[str, list[RunEntry]] = defaultdict(list)
            for entry in self.ledger.entries.unfinished():
                if entry.state is StateType.SCHEDULED and entry.published and entry.queue:
                    by_queue[entry.queue].append(entry)
            for queue, believed in by_queue.items():
                if not self.leading():
                    return
                await self._audit_queue(queue, believed)
        except Exception as exc:  # the next audit tries again
            log.warning("queue audit not done", error=repr(exc))
        finally:
            self._auditing = False

    async def _audit_queue(self, queue: str, believed: list[RunEntry]) -> None:
        subject = subjects.run_subject(queue)
        info = await self.js.stream_info(subjects.RUNS_STREAM, subjects_filter=subject)
        held = (info.state.subjects or {}).get(subject, 0)
        if not audit_due(len(believed), held):
            return
        present = await self._requests_in(subject)
        for entry in lost_requests(believed, present, time.time(), self.interval):
            log.warning("a published run request is not in its queue; publishing it again",
                        run_id=entry.run_id, queue=queue)  # fmt: skip
            msg_id = f"{entry.run_id}:{entry.queued_seq}:audit-{next(_fresh_ids)}"
            await self.outbox.publish(entry, msg_id=msg_id)

    async def _requests_in(self, subject: str) -> set[str]:
        """The run ids of the requests the stream holds on ``subject``."""
        present: set[str] = set()
        seq = 0
        for _ in range(SCAN_LIMIT):
            try:
                message = await self.js.get_msg(
                    subjects.RUNS_STREAM, seq=seq + 1, subject=subject, next=True
                )
            except NotFoundError:
                break
            seq = message.seq or seq + 1
            try:
                present.add(p.decode(p.RunRequest, message.data or b"", tolerant=True).run_id)
            except p.ProtocolError:
                continue  # not a request: an agent dead-letters it
        return present


__all__ = ["QueueAudit"]
