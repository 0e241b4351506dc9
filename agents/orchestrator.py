"""The orchestrator: takes submissions, arbitrates claims and leases, cancels, detects dead
agents, and records every event into the store (through its recorder).

Any number of orchestrators serve together (``agents/leadership.py``): each answers
submissions, claims, hand-backs, cancels and resumes; the leader alone runs the recorder, the
janitor, the scheduler, the automation engine and the slot grants, and releases the runs that
wait on a deployment's limits or a schedule's time. Heartbeats reach every orchestrator (no
queue group); the leader answers them. Requests are served in a queue group, as JSON
(``broker/protocol.py``, docs/protocol.md).

This module holds the orchestrator's life (start, election, step-down, stop) and how requests
are served; each concern has a module of its own (see ``orchestrator_core.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from pydantic import BaseModel

from flowbus.agents.automations import AutomationEngine
from flowbus.agents.background import BackgroundTasks
from flowbus.agents.claims import Claims
from flowbus.agents.controls import Controls
from flowbus.agents.janitor import Janitor
from flowbus.agents.leadership import Leadership, Term
from flowbus.agents.ledger import RunLedger
from flowbus.agents.orchestrator_core import AgentSeen, OrchestratorSettings
from flowbus.agents.queue_service import QueueService
from flowbus.agents.recorded_waits import RecordedWaits
from flowbus.agents.recorder import Recorder
from flowbus.agents.scheduler import Scheduler
from flowbus.agents.slot_service import SlotService
from flowbus.agents.submissions import Submissions
from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.broker.dead_letters import dead_letter
from flowbus.broker.errors import BrokerError
from flowbus.broker.streams import ensure_streams
from flowbus.engine.errors import StoreError
from flowbus.engine.store import DeploymentView, EventStore

log = structlog.get_logger("flowbus.orchestrator")

Handler = Callable[[Any], Awaitable[bytes]]


class Orchestrator(Submissions, Claims, Controls, Janitor):
    """Serve the orchestrator's requests and record events until ``stop()``."""

    def __init__(
        self, client: Client, store: EventStore, settings: OrchestratorSettings | None = None
    ) -> None:
        self.client = client
        self.js = client.jetstream()
        self.store = store
        self.settings = settings or OrchestratorSettings.from_env()
        self.ledger = RunLedger(store, self.settings.lease_seconds, published=self._announce)
        self.ledger.authoritative = False  # until elected
        self.recorded_waits = RecordedWaits(store)
        self.ledger.writer.on_commit = self.recorded_waits.committed
        self.recorder: Recorder | None = None
        self.agents: dict[str, AgentSeen] = {}
        self.queues = QueueService(
            self.js, store, self.settings.run_ack_wait,
            lambda: (q for seen in self.agents.values() for q in seen.heartbeat.queues),
        )  # fmt: skip
        self._models: dict[tuple[str, int], type[BaseModel]] = {}
        self._deployments: dict[str, tuple[float, DeploymentView]] = {}
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        #: The leader's own tasks (recorder, janitor, scheduler, automations), ended on a step-down.
        self._leader_tasks: list[asyncio.Task[Any]] = []
        self._leader_subscriptions: list[Any] = []
        self.background = BackgroundTasks()
        self.scheduler: Scheduler | None = None
        self.automations: AutomationEngine | None = None
        self.slots: SlotService | None = None
        self.leadership = Leadership(
            self.js, self.settings.leader_lease_seconds, self._lead, self._step_down
        )
        self._limited_release = asyncio.Lock()
        self.ledger.on_finished = self._run_finished
        self.ledger.on_foreign = self._adopt
        self._armed: set[str] = set()
        #: Requests answered at once (beyond it, NATS holds them in the subscription's queue).
        self._request_slots = asyncio.Semaphore(2000)
        self.counts: dict[str, int] = {}
        self._failed: BaseException | None = None
        self._lost: set[tuple[str, str, int]] = set()
        self._checking: set[str] = set()

    async def start(self) -> None:
        """Serve requests; lead at once if no other orchestrator does (else stand by)."""
        await ensure_streams(self.js)
        await self.queues.open()
        services: dict[str, tuple[type[p._Message] | None, Handler]] = {
            subjects.SUBMIT: (p.SubmitRequest, self.submit),
            subjects.CANCEL: (p.CancelRequest, self.cancel),
            subjects.CLAIM: (p.ClaimRequest, self.claim),
            subjects.RELEASE: (p.ReleaseRequest, self.release),
            subjects.QUEUES: (None, self.queues.list_queues),
            subjects.QUEUE_UPDATE: (p.QueueUpdate, self.queues.update_queue),
            subjects.AGENTS: (None, self.list_agents),
            subjects.DEPLOYMENTS: (None, self.list_deployments),
            subjects.RESUME: (p.ResumeRequest, self.resume),
            subjects.RETRY: (p.RetryRequest, self.retry),
            subjects.REPLAY: (p.ReplayRequest, self.replay),
            subjects.RECORDED: (p.RecordedRequest, self.recorded),
        }
        for subject, (model, handler) in services.items():
            await self.client.subscribe(
                subject,
                queue=subjects.ORCHESTRATOR_GROUP,
                cb=self._service(subject, model, handler),
            )
        # Every orchestrator hears every heartbeat (who is alive, whose leases); the leader
        # answers.
        await self.client.subscribe(
            subjects.HEARTBEAT, cb=self._service(subjects.HEARTBEAT, p.Heartbeat, self.heartbeat)
        )
        await self.leadership.open()
        await self.leadership.campaign_once()
        self._tasks.append(asyncio.create_task(self.leadership.run(), name="leadership"))
        self._tasks.append(asyncio.create_task(self._janitor(), name="janitor"))
        log.info("orchestrator serving", leader=self.leadership.leading,
                 member=self.leadership.member)  # fmt: skip

    async def _lead(self, term: Term) -> None:
        """Elected: read every unfinished run, then take up the leader's work."""
        loaded = await self.ledger.load()
        self.ledger.authoritative = True
        log.info("leading", term=term.token, unfinished_runs=loaded)
        # The slots granted before are known once every live agent has reported them in a
        # heartbeat: nothing is granted for two heartbeat intervals.
        self.slots = SlotService(self.client, self.store, self.background)
        self.slots.settle(2 * self.settings.heartbeat_seconds + 0.5)
        leader_services: dict[str, tuple[type[p._Message] | None, Handler]] = {
            subjects.SLOT_ACQUIRE: (p.SlotRequest, self.slots.acquire),
            subjects.SLOT_RELEASE: (p.SlotRelease, self.slots.release),
            subjects.LIMITS: (None, self.slots.list_limits),
        }
        for subject, (model, handler) in leader_services.items():
            self._leader_subscriptions.append(
                await self.client.subscribe(
                    subject, queue=subjects.ORCHESTRATOR_GROUP,
                    cb=self._service(subject, model, handler),
                )
            )  # fmt: skip
        self.recorder = Recorder(self.client, self.store, ledger=self.ledger)
        self._leader_tasks.append(asyncio.create_task(self.recorder.run(), name="recorder"))
        if self.settings.scheduler:
            self.scheduler = Scheduler(self.client, self.store)
            self._leader_tasks.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
        if self.settings.automations:
            self.automations = AutomationEngine(self.client, self.store)
            await self.automations.open()
            self._leader_tasks.append(
                asyncio.create_task(self.automations.run(), name="automations")
            )
        for task in self._leader_tasks:
            task.add_done_callback(self._leader_task_ended)

    def _leader_task_ended(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("a leader task failed", task=task.get_name(), error=repr(task.exception()))
            self._failed = task.exception()
            self._stopping.set()

    async def _step_down(self) -> None:
        """Deposed (or stopping): end the leader's work; serve on as a follower."""
        self.ledger.authoritative = False
        for stoppable in (self.recorder, self.scheduler, self.automations):
            if stoppable is not None:
                stoppable.stop()
        tasks, self._leader_tasks = self._leader_tasks, []
        for task in tasks:
            task.remove_done_callback(self._leader_task_ended)
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        subscriptions, self._leader_subscriptions = self._leader_subscriptions, []
        if self.automations is not None:
            subscriptions += self.automations.subscriptions()
        for subscription in subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self.recorder = self.scheduler = self.automations = self.slots = None
        self._armed.clear()

    async def run(self) -> None:
        """Start, then serve until ``stop()`` (or until a daemon task fails)."""
        await self.start()
        stopping = asyncio.create_task(self._stopping.wait())
        done, _ = await asyncio.wait([*self._tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        await self.close()
        if self._failed is not None:
            raise self._failed
        for task in done:
            if task is not stopping and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    def stop(self) -> None:
        self._stopping.set()
        self.leadership.stop()
        for stoppable in (self.recorder, self.scheduler, self.automations):
            if stoppable is not None:
                stoppable.stop()

    async def close(self) -> None:
        self.leadership.stop()
        if self.leadership.term is not None:
            await self._step_down()
            await self.leadership.resign()  # another takes over now, not after a lease
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=10)
            for task in stuck:
                log.error("a daemon task did not stop", task=task.get_name())
        self._tasks.clear()
        await self.background.wait(timeout=5)
        await self.recorded_waits.close()
        await self.ledger.writer.close()
        if self._announcer is not None:  # what it recorded last reaches subscribers too
            try:
                await asyncio.wait_for(self._announcer.pump.flush_async(), 5)
            except (BrokerError, TimeoutError) as exc:
                log.warning("recorded events not all published at stop", error=str(exc))

    def _service(
        self, subject: str, model: type[p._Message] | None, handler: Handler
    ) -> Callable[[Msg], Awaitable[None]]:
        """A subscription callback that answers each request in a task of its own.

        nats-py hands a subscription's messages to its callback one at a time; answering in
        the callback would serialize every request behind the previous one's commit. In tasks,
        the requests of one moment share a transaction (``BatchWriter``).
        """

        async def dispatch(msg: Msg) -> None:
            await self._request_slots.acquire()
            task = self.background.spawn(serve(msg))
            task.add_done_callback(lambda _: self._request_slots.release())

        async def serve(msg: Msg) -> None:
            try:
                request = p.decode(model, msg.data) if model is not None else None
            except p.ProtocolError as exc:
                self._count("bad_requests")
                log.warning("refused a malformed request", subject=subject, error=str(exc)[:500])
                await self._dead_letter(msg, str(exc))
                reply = p.error_reply("bad_request", str(exc))
            else:
                try:
                    reply = await handler(request)
                except StoreError as exc:
                    log.error("store error while serving", subject=subject, error=str(exc))
                    reply = p.error_reply("unavailable", f"the store refused: {exc}")
                except Exception as exc:  # a bug must not take the daemon down
                    log.exception("request failed", subject=subject)
                    reply = p.error_reply("internal", f"{type(exc).__name__}: {exc}")
            if msg.reply and reply:
                await self.client.publish(msg.reply, reply)

        return dispatch

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        # A request (core NATS): the reply already says why; the dead letter is for operators.
        await dead_letter(self.js, "orchestrator", msg, reason, terminate=False)


__all__ = ["Orchestrator", "OrchestratorSettings"]
