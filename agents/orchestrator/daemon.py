"""The orchestrator: takes submissions, arbitrates claims and leases, cancels, detects dead
agents, and records every event into the store (through its leader's recorder).

Any number of orchestrators serve together (``agents/leadership.py``): each answers
submissions, claims, hand-backs, cancels and resumes; the leader alone runs the recorder, the
janitor's sweeps, the scheduler, the automation engine and the slot grants, and releases the
runs that wait on a deployment's limits or a schedule's time. Heartbeats reach every
orchestrator (no queue group); the leader answers them. Requests are served in a queue group,
as JSON (``broker/protocol.py``, docs/protocol.md).

It is a few parts with explicit collaborators, put together here and nowhere else: the ledger
(the runs, compare-and-swap), the executor (decisions become I/O), the outbox and announcer
(what is published after a commit), the releases (the leader's timers and limits), the
request handlers (submissions, claims, controls, reads, queues), the janitor, the leadership,
and the leader's work of each term. Every decision they take is a pure function of
``agents/decisions``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from flowbus.agents.background import BackgroundTasks
from flowbus.agents.final_waits import FinalWaits
from flowbus.agents.leadership import Leadership, Term, member_name
from flowbus.agents.ledger import RunLedger
from flowbus.agents.lifecycle import Daemon, Loop
from flowbus.agents.orchestrator.agents_seen import AgentsSeen
from flowbus.agents.orchestrator.claims import Claims
from flowbus.agents.orchestrator.controls import Controls
from flowbus.agents.orchestrator.deployments import Deployments
from flowbus.agents.orchestrator.executor import Executor
from flowbus.agents.orchestrator.janitor import Janitor
from flowbus.agents.orchestrator.leader import LeaderWork
from flowbus.agents.orchestrator.local_records import LocalRecords
from flowbus.agents.orchestrator.outbox import Announcer, Outbox
from flowbus.agents.orchestrator.queue_audit import QueueAudit
from flowbus.agents.orchestrator.reads import Reads
from flowbus.agents.orchestrator.releases import Releases
from flowbus.agents.orchestrator.run_documents import RunDocuments
from flowbus.agents.orchestrator.settings import OrchestratorSettings
from flowbus.agents.orchestrator.submissions import LocalAgent, Submissions
from flowbus.agents.queue_service import QueueService
from flowbus.agents.recorded_waits import RecordedWaits
from flowbus.agents.recorder import Recorder
from flowbus.agents.run_entry import RunEntry
from flowbus.agents.slot_service import SlotService
from flowbus.broker import protocol as p
from flowbus.broker import subjects, versions
from flowbus.broker.dead_letters import dead_letter
from flowbus.broker.fencing import FenceChecker
from flowbus.broker.identity import IdentityChecker, actor_of
from flowbus.broker.run_documents import DocumentRequest
from flowbus.broker.streams import ensure_streams
from flowbus.engine.errors import StoreError
from flowbus.engine.records import EventRecord
from flowbus.engine.states import StateType
from flowbus.engine.store import EventStore

log = structlog.get_logger("flowbus.orchestrator")

Handler = Callable[[Any], Awaitable[p._Message | None]]


def claim_queue(subject: str) -> str | None:
    """The queue a claim names by its subject (``flowbus.agent.claim.<queue>``), else None."""
    prefix = subjects.CLAIM + "."
    return subject[len(prefix) :] if subject.startswith(prefix) else None


#: Requests answered at once (beyond it, NATS holds them in the subscription's queue).
REQUESTS_AT_ONCE = 2000
#: Waits held at once (``flowbus.api.wait``/``recorded``): a wait holds no slot of the requests
#: above, or a service waiting on thousands of runs would hold back every submit.
WAITS_AT_ONCE = 50_000
_WAITS = frozenset({subjects.WAIT, subjects.RECORDED})
#: How long the leader's work has to stop at a step-down.
STEP_DOWN_SECONDS = 15.0


class Orchestrator(Daemon):
    """Serve the orchestrator's requests and record events until ``stop()``."""

    name = "orchestrator"

    def __init__(
        self, client: Client, store: EventStore, settings: OrchestratorSettings | None = None
    ) -> None:
        super().__init__()
        self.client = client
        self.js = client.jetstream()
        self.store = store
        self.settings = settings = settings or OrchestratorSettings.from_env()
        self.counts: Counter[str] = Counter()
        self.background = BackgroundTasks()
        self.agents = AgentsSeen(settings.lease_seconds)
        member = member_name()
        self.announcer = Announcer(client, member)
        self.ledger = ledger = RunLedger(store, settings.lease_seconds, published=self.announcer)
        ledger.authoritative = False  # until elected
        self.recorded_waits = RecordedWaits(store)
        self.final_waits = FinalWaits(store, leading=self._leading, head_of=self._head_of,
                                      committing=ledger.writer.committing)  # fmt: skip
        ledger.writer.on_commit = self._committed
        self.leadership = Leadership(self.js, settings.leader_lease_seconds, self._lead,
                                     self._step_down, member)  # fmt: skip
        self.leader: LeaderWork | None = None
        self.queues = QueueService(self.js, store, settings.run_ack_wait,
                                   self.agents.served_queues)  # fmt: skip
        self.deployments = Deployments(store, ledger)
        self.outbox = Outbox(client, self.queues)
        self.executor = executor = Executor(ledger, self.outbox, self.deployments, self.js,
                                            store, self.counts)  # fmt: skip
        leading = self._leading
        self.controls = Controls(executor, client)
        self.releases = Releases(ledger, executor, self.deployments, self.outbox,
                                 self.background, leading, self.controls.cancel_run)  # fmt: skip
        executor.releases = self.releases
        self.fences = FenceChecker()
        self.submissions = Submissions(executor, ledger, self.deployments, leading, self.counts,
                                       self.fences, settings.lease_seconds)  # fmt: skip
        self.claims = Claims(executor, ledger, self.deployments, self.agents, self.background,
                             leading, self._slots, settings.lease_seconds,
                             self.fences)  # fmt: skip
        self.reads = Reads(store, self.recorded_waits, self.final_waits)
        #: The local lane's recording (``agents/local_lane.py``), for an agent of this process.
        self.local_records = LocalRecords(ledger, self.announcer, self._recorder, self.counts)
        self.run_documents = RunDocuments(store, ledger, self.deployments, self.fences)
        self.audit = QueueAudit(self.js, ledger, self.outbox, self.background, leading,
                                settings.queue_audit_interval)  # fmt: skip
        self.janitor = Janitor(settings, ledger, executor, self.releases, self.outbox,
                               self.audit, self.agents, leading, self._term,
                               self._slots)  # fmt: skip
        ledger.on_finished = self._run_finished
        ledger.on_foreign = self.releases.adopt
        self._request_slots = asyncio.Semaphore(REQUESTS_AT_ONCE)
        self._wait_slots = asyncio.Semaphore(WAITS_AT_ONCE)
        #: Who provably sent a request (its NATS credential's user): the actor recorded.
        self.identities = IdentityChecker.from_env()

    def hand_over_to(self, agent: LocalAgent) -> None:
        """New runs may go straight to ``agent``, which lives in this process, while it is
        idle and this orchestrator leads (``Submissions``); the agent records its runs' events
        through ``local_records``."""
        self.submissions.local_agent = agent

    # --- what the parts ask of the whole ---------------------------------------------------

    def _leading(self) -> bool:
        return self.leadership.leading

    def _term(self) -> int | None:
        """The fencing token written into the leader's own decisions."""
        term = self.leadership.term
        return term.token if term is not None else None

    def _head_of(self, run_id: str) -> tuple[StateType, int] | None:
        entry = self.ledger.entries.get(run_id)
        return (entry.state, entry.seq) if entry is not None else None

    def _recorder(self) -> Recorder | None:
        return self.leader.recorder if self.leader is not None else None

    def _slots(self) -> SlotService | None:
        return self.leader.slots if self.leader is not None else None

    def _run_finished(self, entry: RunEntry) -> None:
        """A run reached a final state: what it held comes back, at once."""
        slots = self._slots()
        if slots is not None:
            slots.reclaim(lambda h: h.run_id == entry.run_id, "its flow run ended")
        if self.leadership.leading:
            self.releases.wake(entry.deployment)

    def _committed(self, records: list[EventRecord]) -> None:
        """What this process just committed answers the waits on it, without a read."""
        self.recorded_waits.committed(records)
        self.final_waits.committed(records)

    # --- life ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Serve requests; lead at once if no other orchestrator does (else stand by)."""
        await ensure_streams(self.js)
        await self.queues.open()
        services: dict[str, tuple[type[p._Message] | None, Handler]] = {
            subjects.SUBMIT: (p.SubmitRequest, self.submissions.submit),
            subjects.CANCEL: (p.CancelRequest, self.controls.cancel),
            subjects.CLAIM: (p.ClaimRequest, self.claims.claim),
            subjects.CLAIMS_BY_QUEUE: (p.ClaimRequest, self.claims.claim),
            subjects.RELEASE: (p.ReleaseRequest, self.claims.release),
            subjects.QUEUES: (None, self.queues.list_queues),
            subjects.QUEUE_UPDATE: (p.QueueUpdate, self.queues.update_queue),
            subjects.AGENTS: (None, self.claims.list_agents),
            subjects.DEPLOYMENTS: (None, self.reads.list_deployments),
            subjects.RESUME: (p.ResumeRequest, self.controls.resume),
            subjects.RETRY: (p.RetryRequest, self.controls.retry),
            subjects.REPLAY: (p.ReplayRequest, self.reads.replay),
            subjects.RECORDED: (p.RecordedRequest, self.reads.recorded),
            subjects.WAIT: (p.WaitRequest, self.reads.wait),
            subjects.DOCUMENTS: (DocumentRequest, self.run_documents.serve),
        }
        for subject, (model, handler) in services.items():
            await self.subscribe(subject, model, handler)
        # Every orchestrator hears every heartbeat (who is alive, whose leases); the leader
        # answers.
        await self.client.subscribe(
            subjects.HEARTBEAT,
            cb=self._service(subjects.HEARTBEAT, p.Heartbeat, self.claims.heartbeat),
        )
        await self.leadership.open()
        await self.leadership.campaign_once()
        log.info("orchestrator serving", leader=self.leadership.leading,
                 member=self.leadership.member)  # fmt: skip

    def loops(self) -> dict[str, Loop]:
        return {"leadership": self.leadership.run, "janitor": self._janitor}

    async def drain(self) -> None:
        self.leadership.stop()
        if self.leadership.term is not None:
            await self._step_down()
            await self.leadership.resign()  # another takes over now, not after a lease

    async def close(self) -> None:
        await self.background.wait(timeout=5)
        await self.recorded_waits.close()
        await self.final_waits.close()
        await self.ledger.writer.close()
        await self.announcer.flush(5)  # what it recorded last reaches subscribers too

    def stop(self) -> None:
        super().stop()
        self.leadership.stop()

    async def _janitor(self) -> None:
        while not self.stopping:
            try:
                await self.janitor.sweep()
            except Exception:  # the next sweep tries again
                log.exception("janitor sweep failed")
            await self.until_stopped(self.settings.janitor_interval)

    async def _lead(self, term: Term) -> None:
        """Elected: read every unfinished run, then take up the leader's work."""
        loaded = await self.ledger.load()
        self.ledger.authoritative = True
        log.info("leading", term=term.token, unfinished_runs=loaded)
        work = LeaderWork(self.client, self.store, self.ledger, self.settings, self.background,
                          self.subscribe, self.fences, self.leadership.member)  # fmt: skip
        self.leader = work
        await work.start()
        waiting = asyncio.ensure_future(work.wait())
        waiting.add_done_callback(lambda done: self._leader_ended(work, done))

    def _leader_ended(self, work: LeaderWork, done: asyncio.Future[None]) -> None:
        if done.cancelled() or done.exception() is None or self.leader is not work:
            return
        error = done.exception()
        assert error is not None
        log.error("the leader's work failed", error=repr(error))
        self.fail(error)

    async def _step_down(self) -> None:
        """Deposed (or stopping): end the leader's work; serve on as a follower."""
        self.ledger.authoritative = False
        work, self.leader = self.leader, None
        if work is not None:
            work.stop()
            try:
                await asyncio.wait_for(work.wait(), STEP_DOWN_SECONDS)
            except TimeoutError:
                work.abort()
            except Exception as exc:  # it failed as it stopped: nothing more to stop
                log.warning("the leader's work ended with an error", error=repr(exc))
        self.releases.forget_timers()

    # --- serving requests ------------------------------------------------------------------

    async def subscribe(
        self, subject: str, model: type[p._Message] | None, handler: Handler
    ) -> Any:
        """Serve ``subject`` in the orchestrators' queue group."""
        return await self.client.subscribe(subject, queue=subjects.ORCHESTRATOR_GROUP,
                                           cb=self._service(subject, model, handler))  # fmt: skip

    def _service(
        self, subject: str, model: type[p._Message] | None, handler: Handler
    ) -> Callable[[Msg], Awaitable[None]]:
        """A subscription callback that answers each request in a task of its own.

        nats-py hands a subscription's messages to its callback one at a time; answering in
        the callback would serialize every request behind the previous one's commit. In tasks,
        the requests of one moment share a transaction (``BatchWriter``).
        """

        slots = self._wait_slots if subject in _WAITS else self._request_slots

        async def dispatch(msg: Msg) -> None:
            await slots.acquire()
            task = self.background.spawn(serve(msg))
            task.add_done_callback(lambda _: slots.release())

        async def serve(msg: Msg) -> None:
            try:
                mismatch, tolerant = versions.reading(msg.headers)  # tolerant: a newer minor's
                if mismatch is not None:
                    raise p.ProtocolError(mismatch)
                request = p.decode(model, msg.data, tolerant) if model is not None else None
                if isinstance(request, p.ClaimRequest):  # its queue is the subject's alone
                    request = request.model_copy(update={"queue": claim_queue(msg.subject)})
                elif request is not None and "actor" in type(request).model_fields:
                    sender = self.identities.sender(msg.subject, msg.data, msg.headers)
                    actor = actor_of(getattr(request, "actor", None), sender)
                    request = request.model_copy(update={"actor": actor})
            except p.ProtocolError as exc:
                self.counts["bad_requests"] += 1
                log.warning("refused a malformed request", subject=subject, error=str(exc)[:500])
                # A request (core NATS): the reply says why; the dead letter is for operators.
                await dead_letter(self.js, "orchestrator", msg, str(exc), terminate=False)
                reply: p._Message | None = p.error("bad_request", str(exc))
            else:
                try:
                    reply = await handler(request)
                except StoreError as exc:
                    log.error("store error while serving", subject=subject, error=str(exc))
                    reply = p.error("unavailable", f"the store refused: {exc}")
                except Exception as exc:  # a bug must not take the daemon down
                    log.exception("request failed", subject=subject)
                    reply = p.error("internal", f"{type(exc).__name__}: {exc}")
            if msg.reply and reply is not None:
                await self.client.publish(msg.reply, reply.dump())

        return dispatch


__all__ = ["Orchestrator"]
