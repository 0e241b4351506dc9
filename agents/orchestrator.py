"""The orchestrator: takes submissions, arbitrates claims and leases, cancels, detects dead
agents, and records every event into the store (through its recorder).

Submissions and the outbox: a submission is validated, recorded as a Scheduled run, and then its
run request is published to the queue. The store is the outbox: a run that is Scheduled and not
known to be published is published again by the janitor, and at start every Scheduled run is
(its request's ``Nats-Msg-Id`` is ``<run>:<seq of the event that queued it>``, so JetStream drops
a copy inside its duplicate window, and a claim refuses a copy after it). Killed between the write
and the publish, the run is dispatched after the restart; a copy never runs twice.

Requests are served in a queue group, as JSON (``broker/protocol.py``, docs/protocol.md).

Any number of orchestrators serve together (``agents/leadership.py``): each answers
submissions, claims, hand-backs, cancels and resumes; the leader alone runs the recorder, the
janitor, the scheduler, the automation engine and the slot grants, and releases the runs that
wait on a deployment's limits or a schedule's time. Heartbeats reach every orchestrator (no
queue group); the leader answers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import BaseModel, ValidationError

from flowbus.agents.automations import AutomationEngine
from flowbus.agents.background import BackgroundTasks
from flowbus.agents.decisions import (
    Sweep,
    claim_refusal,
    held_by,
    released_by_leader,
    sweep_actions,
)
from flowbus.agents.leadership import Leadership, Term
from flowbus.agents.ledger import RunEntry, RunLedger
from flowbus.agents.queue_service import QueueService
from flowbus.agents.recorder import Recorder
from flowbus.agents.scheduler import Scheduler
from flowbus.agents.settings import OrchestratorEnv, load
from flowbus.agents.slot_service import SlotService
from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.broker.dead_letters import dead_letter
from flowbus.broker.streams import ensure_streams
from flowbus.engine.clock import canonical, now_iso
from flowbus.engine.deployments import NAMESPACE
from flowbus.engine.errors import StoreError
from flowbus.engine.faults import crash_point
from flowbus.engine.ids import new_id
from flowbus.engine.names import generate_run_name
from flowbus.engine.records import EventRecord, make_record, state_dict
from flowbus.engine.schema_model import model_from_schema
from flowbus.engine.states import (
    AwaitingRetry,
    Cancelled,
    Cancelling,
    Crashed,
    Failed,
    Late,
    Pending,
    Scheduled,
    StateType,
)
from flowbus.engine.store import DeploymentView, EventStore

log = structlog.get_logger("flowbus.orchestrator")

S = StateType
#: How long a deployment read from the store is used before it is read again.
DEPLOYMENT_CACHE_SECONDS = 1.0
#: States in which a deployment's run counts as still running for the overlap policy.
OVERLAPPING = frozenset({S.PENDING, S.RUNNING, S.CANCELLING, S.PAUSED})
#: A run another orchestrator queued and still unclaimed after this is published once more by
#: the leader (its writer may have died between its write and its publish).
FOREIGN_GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class OrchestratorSettings:
    #: A run whose agent has not renewed its lease for this long is Crashed.
    lease_seconds: float = 30.0
    #: How often the janitor looks for expired leases, unpublished and late runs.
    janitor_interval: float = 1.0
    #: A queued run not claimed this long after it was queued becomes Late.
    late_after: float = 15.0
    #: JetStream redelivers a run request its agent neither acked nor kept alive after this.
    run_ack_wait: float = 30.0
    #: Whether the scheduler runs in this process (``FLOWBUS_SCHEDULER=off`` leaves it to a
    #: ``flowbus scheduler start`` elsewhere).
    scheduler: bool = True
    #: Whether the automation engine runs in this process (``FLOWBUS_AUTOMATIONS=off``: not).
    automations: bool = True

    #: How often agents renew their leases: a restarted orchestrator grants no slot for two.
    heartbeat_seconds: float = 5.0
    #: How long the leader's lease lasts without renewal (a dead leader's successor waits it).
    leader_lease_seconds: float = 5.0

    @classmethod
    def from_env(cls) -> OrchestratorSettings:
        """Settings from the ``FLOWBUS_*`` variables of ``OrchestratorEnv`` (validated: a bad
        value is a ``SettingsError`` naming the variable)."""
        env = load(OrchestratorEnv)
        return cls(
            lease_seconds=env.lease_seconds,
            janitor_interval=env.janitor_interval,
            late_after=env.late_after_seconds,
            run_ack_wait=env.run_ack_wait,
            scheduler=env.scheduler,
            automations=env.automations,
            heartbeat_seconds=env.heartbeat_seconds,
            leader_lease_seconds=env.leader_lease_seconds,
        )


@dataclass
class _AgentSeen:
    heartbeat: p.Heartbeat
    last_seen: float
    last_seen_iso: str = field(default_factory=now_iso)


Handler = Callable[[Any], Awaitable[bytes]]


class Orchestrator:
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
        self.recorder: Recorder | None = None
        self.agents: dict[str, _AgentSeen] = {}
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
        #: No slot is granted before this (monotonic) time: two heartbeat intervals after the
        #: start, by when every live agent has reported the slots its task runs hold.
        self._limited_release = asyncio.Lock()
        #: tag -> (read at, its limit or None), from the store's ``limit`` documents.
        self._limits: dict[str, tuple[float, int | None]] = {}
        self.ledger.on_finished = self._run_finished
        self.ledger.on_foreign = self._adopt
        #: Runs made ahead of time whose release timer is set.
        self._armed: set[str] = set()
        #: Requests answered at once (beyond it, NATS holds them in the subscription's queue).
        self._request_slots = asyncio.Semaphore(2000)
        self.counts: dict[str, int] = {}
        self._failed: BaseException | None = None
        #: (agent, run, attempt) the store says the agent no longer holds: named in its next
        #: heartbeat's answer. Runs being read for that now.
        self._lost: set[tuple[str, str, int]] = set()
        self._checking: set[str] = set()

    # --- life -----------------------------------------------------------------------------

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
            subjects.RESUME: (p.ResumeRequest, self.resume),
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
        for subject, (model, handler) in {
            subjects.SLOT_ACQUIRE: (p.SlotRequest, self.slots.acquire),
            subjects.SLOT_RELEASE: (p.SlotRelease, self.slots.release),
            subjects.LIMITS: (None, self.slots.list_limits),
        }.items():
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
        await self.ledger.writer.close()

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

    def _term(self) -> dict[str, int]:
        """The fencing token written into the leader's own decisions."""
        term = self.leadership.term
        return {"leader_term": term.token} if term is not None else {}

    def _count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    # --- submit ----------------------------------------------------------------------------

    async def submit(self, request: p.SubmitRequest) -> bytes:
        deployment = await self._deployment(request.deployment)
        if deployment is None:
            known = sorted(d.name for d in await self.store.list_deployments())
            return p.error_reply(
                "unknown_deployment",
                f"no deployment named {request.deployment!r}",
                {"known": known[:50]},
            )
        try:
            parameters = self._validate(deployment, request.parameters)
            orjson.dumps(parameters)  # what an event cannot hold (a 65-bit integer) is refused now
        except orjson.JSONEncodeError as exc:
            message = f"invalid parameters for deployment {deployment.name!r}: {exc}"
            return p.error_reply("invalid_parameters", message)
        except ValidationError as exc:
            errors = [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()
            ]
            message = f"invalid parameters for deployment {deployment.name!r}:\n{exc}"
            return p.error_reply("invalid_parameters", message, errors)
        if request.idempotency_key is not None:
            key = f"{deployment.name}\x00{request.idempotency_key}"
            run_id = str(uuid.uuid5(NAMESPACE, key))
        else:
            run_id = new_id()

        due = request.scheduled_time

        async def decide(entry: RunEntry | None) -> tuple[bytes, list[EventRecord]]:
            if entry is not None or await self.store.head(run_id) > 0:
                return await self._existing_submission(run_id, entry), []
            state = Scheduled(message=f"for {canonical(due)}" if due else None)
            name = generate_run_name()
            fields = {
                "flow_name": deployment.flow_name,
                "name": name,
                "flow_version": None,
                "parameters": parameters,
                "tags": list(dict.fromkeys([*deployment.tags, *request.tags])),
                "parent_run_id": None,
                "parent_task_run_id": None,
                "deployment": deployment.name,
                "queue": deployment.queue,
                "idempotency_key": request.idempotency_key,
                "scheduled_time": canonical(due) if due else None,
                "schedule_id": request.schedule_id,
                "triggered_by": request.triggered_by,
                "state": state_dict(state),
            }
            record = make_record(run_id, 1, "flow_run.created", fields, state.timestamp_iso)
            entry = RunEntry(
                run_id=run_id,
                name=name,
                deployment=deployment.name,
                queue=deployment.queue,
                state=S.SCHEDULED,
                state_name=state.name,
                seq=1,
                parameters=parameters,
                tags=fields["tags"],
                queued_at=due.timestamp() if due else time.time(),
                retries=await self.ledger.retries_of(deployment.name),
                due_at=due.timestamp() if due else 0.0,
                schedule_id=request.schedule_id,
                committed=False,
            )
            self.ledger.add(entry)
            reply = p.SubmitReply(run_id=run_id, name=name, queue=deployment.queue, created=True)
            return reply.dump(), [record]

        reply = await self.ledger.transact(run_id, decide)
        entry = self.ledger.entries.get(run_id)
        if entry is not None:
            entry.committed = True
        if entry is not None and not entry.published and entry.seq == 1:
            crash_point("after-schedule-write")  # recorded, not published: the outbox test
            if self.leadership.leading:
                if entry.due_at > time.time():
                    self._arm(entry)
                else:
                    await self._release(entry)
            elif not released_by_leader(entry, deployment, time.time()):
                await self._dispatch(entry)
            # else the leader releases it: it follows what this orchestrator wrote
        self._count("submitted")
        return reply

    def _adopt(self, entry: RunEntry) -> None:
        """The leader learns of a run another orchestrator queued: it releases the runs only
        a leader may release; the others their writer published."""
        entry.published = True
        self.background.spawn(self._adopted(entry))

    async def _adopted(self, entry: RunEntry) -> None:
        deployment = await self._deployment(entry.deployment)
        now = time.time()
        if deployment is None or not released_by_leader(entry, deployment, now):
            return
        entry.published, entry.foreign = False, False
        if entry.due_at > now:
            self._arm(entry)
        else:
            await self._release(entry)

    async def _deployment(self, name: str) -> DeploymentView | None:
        """A deployment, read at most once a second: deployments are saved straight into the
        store (by ``flowbus deploy``), so a redeploy takes effect within a second."""
        now = time.monotonic()
        cached = self._deployments.get(name)
        if cached is not None and now - cached[0] < DEPLOYMENT_CACHE_SECONDS:
            return cached[1]
        deployment = await self.store.get_deployment(name)
        if deployment is not None:
            self._deployments[name] = (now, deployment)
        return deployment

    def _validate(self, deployment: DeploymentView, given: dict[str, Any]) -> dict[str, Any]:
        key = (deployment.name, deployment.version)
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = model_from_schema(deployment.parameter_schema)
            self.ledger.forget_deployment(deployment.name)  # a redeploy may change retries
        validated = model.model_validate({**deployment.parameters, **given})
        return validated.model_dump(mode="json")

    async def _existing_submission(self, run_id: str, entry: RunEntry | None) -> bytes:
        if entry is not None:
            name, queue = entry.name, entry.queue
        else:
            view = await self.store.get_flow_run(run_id)
            name = view.name if view else run_id
            queue = ""
            if view is not None and view.deployment:
                deployment = await self.store.get_deployment(view.deployment)
                queue = deployment.queue if deployment else ""
        return p.SubmitReply(run_id=run_id, name=name, queue=queue, created=False).dump()

    async def _dispatch(self, entry: RunEntry) -> None:
        """Publish the run's request to its queue (the outbox's second half)."""
        try:
            await self.queues.ensure(entry.queue)
            request = p.RunRequest(
                run_id=entry.run_id, deployment=entry.deployment, dispatch=entry.queued_seq
            )
            await self.js.publish(
                subjects.run_subject(entry.queue),
                request.dump(),
                timeout=5,
                headers={"Nats-Msg-Id": f"{entry.run_id}:{entry.queued_seq}"},
            )
        except Exception as exc:  # the janitor publishes it again
            log.warning("could not publish a run request", run_id=entry.run_id, error=repr(exc))
            return
        entry.published = True

    # --- runs made ahead of time (schedules) ------------------------------------------------

    def _arm(self, entry: RunEntry) -> None:
        """Release the run when its time comes (a timer: no polling; the janitor re-arms the
        timers of runs read back after a restart)."""
        if entry.run_id in self._armed:
            return
        self._armed.add(entry.run_id)
        delay = max(0.0, entry.due_at - time.time())
        asyncio.get_running_loop().call_later(delay, self._due, entry.run_id)

    def _due(self, run_id: str) -> None:
        self._armed.discard(run_id)
        entry = self.ledger.entries.get(run_id)
        if (
            self.leadership.leading
            and entry is not None
            and entry.state is S.SCHEDULED
            and not entry.published
        ):
            self.background.spawn(self._release(entry))

    async def _release(self, entry: RunEntry) -> None:
        """Publish a run whose time has come; a schedule's run first meets its deployment's
        policies (schedule still active, overlap)."""
        if entry.schedule_id is not None and entry.queued_seq == 1:
            refusal = await self._slot_refusal(entry)
            if refusal is not None:
                await self._cancel_unstarted(entry.run_id, refusal)
                return
        deployment = await self._deployment(entry.deployment)
        if deployment is None or not deployment.concurrency_limit or entry.queued_seq != 1:
            await self._dispatch(entry)
            return
        async with self._limited_release:  # one check-then-publish at a time: none overtakes
            if entry.state is not S.SCHEDULED or entry.published:
                return
            going = self._going(entry)
            if len(going) < deployment.concurrency_limit:
                await self._dispatch(entry)
            elif deployment.collision == "cancel":
                await self._cancel_unstarted(
                    entry.run_id,
                    f"{deployment.name} already has {len(going)} runs going (concurrency limit "
                    f"{deployment.concurrency_limit}, collision strategy cancel)",
                )
            # else: it waits, Scheduled and unpublished, until a run of the deployment ends

    def _going(self, entry: RunEntry) -> list[RunEntry]:
        """The deployment's other runs that are queued (published) or under way."""
        return [
            other
            for other in self.ledger.entries.values()
            if other.deployment == entry.deployment
            and other.run_id != entry.run_id
            and (other.state in OVERLAPPING or (other.state is S.SCHEDULED and other.published))
        ]

    def _wake_deployment(self, name: str) -> None:
        """A run of ``name`` ended: its runs held back by the deployment's concurrency limit
        are offered the room, oldest first."""
        cached = self._deployments.get(name)
        if cached is None or not cached[1].concurrency_limit:
            return  # no limit, so nothing is held back (a limited release caches its deployment)
        now = time.time()
        held = sorted(
            (
                e
                for e in self.ledger.entries.values()
                if e.deployment == name
                and e.state is S.SCHEDULED
                and e.committed
                and not e.published
                and e.due_at <= now
            ),
            key=lambda e: e.queued_at,
        )
        for entry in held:
            self.background.spawn(self._release(entry))

    async def _slot_refusal(self, entry: RunEntry) -> str | None:
        """Why a schedule's run must not start now, or None. Under the overlap policy
        ``cancel`` the deployment's runs still running are cancelled first."""
        deployment = await self._deployment(entry.deployment)
        if deployment is None:
            return f"deployment {entry.deployment} is gone"
        active = {s["id"] for s in deployment.schedules if s.get("active", True)}
        if entry.schedule_id not in active:
            return f"schedule {entry.schedule_id} of {deployment.name} is paused or removed"
        running = [
            other
            for other in self.ledger.entries.values()
            if other.deployment == entry.deployment
            and other.run_id != entry.run_id
            and other.state in OVERLAPPING
        ]
        if not running or deployment.overlap == "allow":
            return None
        if deployment.overlap == "skip":
            return (
                f"skipped: run {running[0].name} of {deployment.name} is still running "
                "(overlap policy skip)"
            )
        for other in running:
            log.info("cancelling an overlapping run", run_id=other.run_id, for_run=entry.run_id)
            await self.cancel(p.CancelRequest(run_id=other.run_id))
        return None

    async def _cancel_unstarted(self, run_id: str, message: str) -> None:
        async def decide(entry: RunEntry | None) -> tuple[None, list[EventRecord]]:
            if entry is None or entry.state is not S.SCHEDULED or entry.published:
                return None, []
            return None, [self.ledger.record_state(entry, Cancelled(message=message))]

        await self.ledger.transact(run_id, decide)
        log.info("scheduled run not started", run_id=run_id, reason=message)

    async def _dispatch_if_queued_again(self, run_id: str) -> None:
        """Publish the request of a run a decision just queued again (a crash with retries)."""
        entry = self.ledger.entries.get(run_id)
        if entry is not None and entry.state is S.SCHEDULED and not entry.published:
            await self._dispatch(entry)

    # --- queues ---------------------------------------------------------------------------

    # --- agents ---------------------------------------------------------------------------

    async def claim(self, request: p.ClaimRequest) -> bytes:
        lease = self.settings.lease_seconds

        async def decide(entry: RunEntry | None) -> tuple[bytes, list[EventRecord]]:
            if entry is None:
                refusal = p.ClaimRefusal(reason="unknown", message="no such run of a deployment")
                return refusal.dump(), []
            records: list[EventRecord] = []
            if entry.lease_expired(time.monotonic()):
                records += self._crash(entry, f"agent {entry.agent} stopped renewing its lease")
            refusal = claim_refusal(entry)
            if refusal is not None:
                return refusal.dump(), records
            deployment = await self._deployment(entry.deployment)
            if deployment is None:
                refusal = p.ClaimRefusal(reason="unknown", message="its deployment is gone")
                return refusal.dump(), records
            attempt = entry.attempt + 1
            record = self.ledger.record_state(
                entry, Pending(), agent=request.agent, attempt=attempt
            )
            records.append(record)
            reply = p.ClaimGrant(
                run_id=entry.run_id,
                attempt=attempt,
                seq=record.seq,
                name=entry.name,
                flow_name=deployment.flow_name,
                deployment=deployment.name,
                entrypoint=deployment.entrypoint,
                working_dir=deployment.working_dir,
                parameters=entry.parameters,
                tags=entry.tags,
                lease_seconds=lease,
                resumes=entry.resumes,
            )
            return reply.dump(), records

        reply = await self.ledger.transact(request.run_id, decide)
        await self._dispatch_if_queued_again(request.run_id)  # its holder's lease had expired
        return reply

    async def heartbeat(self, beat: p.Heartbeat) -> bytes:
        """Renew the leases of the runs the agent holds; the leader answers with those it no
        longer holds. Nothing here waits for the store: a run this orchestrator's copy does not
        show held by that attempt (another's claim it has not followed yet, say) is read again
        in the background, and named lost in a later answer only if the store agrees."""
        now = time.monotonic()
        self.agents[beat.agent] = _AgentSeen(beat, now)
        if self.slots is not None:  # after an election, earlier grants count again
            self.slots.adopt(beat.agent, beat.slots)
        leading = self.leadership.leading
        lost = []
        for held in beat.runs:
            self.ledger.heard[held.run_id] = (beat.agent, held.attempt, now)
            entry = self.ledger.entries.get(held.run_id)
            if entry is not None and held_by(entry, beat.agent, held.attempt):
                entry.lease_until = now + self.settings.lease_seconds
            elif (beat.agent, held.run_id, held.attempt) in self._lost:
                self._lost.discard((beat.agent, held.run_id, held.attempt))
                lost.append(held.run_id)
            elif leading and held.run_id not in self._checking:
                self._checking.add(held.run_id)
                self.background.spawn(self._check_holder(beat.agent, held))
        if not leading:
            return b""  # the leader answers
        return p.HeartbeatReply(lost=lost, lease_seconds=self.settings.lease_seconds).dump()

    async def _check_holder(self, agent: str, held: p.HeldRun) -> None:
        """Read a run the leader's copy does not show held by ``agent``'s attempt."""
        try:
            async with self.ledger.locks.hold(held.run_id):
                entry = await self.ledger.get(held.run_id, fresh=True)
            if entry is None or not held_by(entry, agent, held.attempt):
                self._lost.add((agent, held.run_id, held.attempt))
        except Exception as exc:  # the next heartbeat asks again
            log.warning("could not read a heartbeat's run", run_id=held.run_id, error=repr(exc))
        finally:
            self._checking.discard(held.run_id)

    async def release(self, request: p.ReleaseRequest) -> bytes:
        async def decide(entry: RunEntry | None) -> tuple[bytes, list[EventRecord]]:
            if (
                entry is None
                or not entry.open
                or entry.attempt != request.attempt
                or entry.agent != request.agent
                or entry.state.is_terminal
            ):
                return p.Ok().dump(), []  # no longer that agent's: nothing to give up
            if request.outcome == "crashed":
                return p.Ok().dump(), self._crash(entry, request.message or "its process died")
            message = request.message or f"handed back by agent {request.agent}"
            record = self.ledger.record_state(entry, Scheduled(message=message), close=True)
            entry.published = True  # the agent naks the request: it comes back by itself
            return p.Ok().dump(), [record]

        reply = await self.ledger.transact(request.run_id, decide)
        await self._dispatch_if_queued_again(request.run_id)
        return reply

    def _crash(self, entry: RunEntry, message: str, **fields: Any) -> list[EventRecord]:
        """Fence the run's attempt and end it Crashed; queue it again if retries are left."""
        if entry.state is S.CANCELLING:  # it was being cancelled when its agent died
            cancelled = Cancelled(message=message)
            return [self.ledger.record_state(entry, cancelled, close=True, **fields)]
        records = [self.ledger.record_state(entry, Crashed(message=message), close=True, **fields)]
        if entry.crashes <= entry.retries:
            again = f"{message}; queued again (retry {entry.crashes} of {entry.retries})"
            records.append(self.ledger.record_state(entry, AwaitingRetry(message=again)))
            entry.published = False
        self._count("crashed")
        log.warning("run crashed", run_id=entry.run_id, reason=message, requeued=len(records) > 1)
        return records

    async def list_agents(self, _: None) -> bytes:
        now = time.monotonic()
        agents = [
            p.AgentInfo(
                name=name,
                queues=seen.heartbeat.queues,
                concurrency=seen.heartbeat.concurrency,
                runs=seen.heartbeat.runs,
                started=seen.heartbeat.started,
                last_heartbeat=seen.last_seen_iso,
                hostname=seen.heartbeat.hostname,
                pid=seen.heartbeat.pid,
                alive=now - seen.last_seen < self.settings.lease_seconds,
            )
            for name, seen in sorted(self.agents.items())
        ]
        return p.AgentList(agents=agents).dump()

    def _run_finished(self, entry: RunEntry) -> None:
        """A run reached a final state: what it held comes back, at once."""
        if self.slots is not None:
            self.slots.reclaim(lambda h: h.run_id == entry.run_id, "its flow run ended")
        if self.leadership.leading:
            self._wake_deployment(entry.deployment)

    # --- pause and resume ------------------------------------------------------------------

    async def resume(self, request: p.ResumeRequest) -> bytes:
        """Queue a Paused run again; its pause returns the (validated) input when it runs."""

        async def decide(entry: RunEntry | None) -> tuple[bytes, list[EventRecord]]:
            if entry is None or entry.state is not S.PAUSED:
                view = await self.store.get_flow_run(request.run_id)
                if view is None:
                    return p.error_reply("not_found", f"no run {request.run_id}"), []
                return p.error_reply(
                    "not_paused", f"run {request.run_id} is {view.state_name}, not Paused"
                ), []
            given = request.input
            schema = entry.pause_input_schema
            if schema is not None:
                try:
                    given = (
                        model_from_schema(schema)
                        .model_validate(given or {})
                        .model_dump(mode="json")
                    )
                except ValidationError as exc:
                    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                              for e in exc.errors()]  # fmt: skip
                    message = f"invalid input for run {entry.name}:\n{exc}"
                    return p.error_reply("invalid_input", message, errors), []
            elif given:
                return p.error_reply(
                    "invalid_input", f"the pause of run {entry.name} takes no input"
                ), []
            fields = {"pause_key": entry.pause_key, "resume_input": given}
            record = self.ledger.record_state(entry, Scheduled(message="resumed"), **fields)
            entry.published = False
            return p.ResumeReply(run_id=entry.run_id, state="Scheduled").dump(), [record]

        reply = await self.ledger.transact(request.run_id, decide)
        await self._dispatch_if_queued_again(request.run_id)
        return reply

    async def _expire_pause(self, run_id: str) -> None:
        async def decide(entry: RunEntry | None) -> tuple[None, list[EventRecord]]:
            if entry is None or entry.state is not S.PAUSED or entry.pause_deadline > time.time():
                return None, []
            message = f"not resumed in time (paused at {entry.pause_key})"
            return None, [self.ledger.record_state(entry, Failed(message=message), **self._term())]

        await self.ledger.transact(run_id, decide)

    # --- cancel ---------------------------------------------------------------------------

    async def cancel(self, request: p.CancelRequest) -> bytes:
        ask: dict[str, Any] = {}

        async def decide(entry: RunEntry | None) -> tuple[bytes, list[EventRecord]]:
            if entry is None:
                view = await self.store.get_flow_run(request.run_id)
                if view is None:
                    return p.error_reply("not_found", f"no run {request.run_id}"), []
                if view.state_type in {t.value for t in S if t.is_terminal}:
                    return p.CancelReply(run_id=view.id, state=view.state_name).dump(), []
                return p.error_reply(
                    "not_cancellable", "only runs of deployments can be cancelled"
                ), []
            if entry.state.is_terminal or entry.state is S.CANCELLING:
                return p.CancelReply(run_id=entry.run_id, state=entry.state_name).dump(), []
            if entry.held and not entry.lease_expired(time.monotonic()):
                ask.update(agent=entry.agent, attempt=entry.attempt)
                return b"", []
            cancelled = Cancelled(message="cancelled on request")
            record = self.ledger.record_state(entry, cancelled, close=True)
            return p.CancelReply(run_id=entry.run_id, state="Cancelled").dump(), [record]

        reply = await self.ledger.transact(request.run_id, decide)
        if not ask:
            return reply
        try:
            answer = await self.client.request(
                subjects.agent_cancel_subject(ask["agent"]),
                p.AgentCancel(run_id=request.run_id, attempt=ask["attempt"]).dump(),
                timeout=1.0,
            )
            if p.decode(p.Ok, answer.data):
                return p.CancelReply(run_id=request.run_id, state="Cancelling").dump()
        except (NoRespondersError, NatsTimeoutError, TimeoutError, p.ProtocolError) as exc:
            log.warning("agent did not take a cancel", agent=ask["agent"], error=repr(exc))
        return await self._cancel_without_agent(request.run_id, ask["attempt"])

    async def _cancel_without_agent(self, run_id: str, attempt: int) -> bytes:
        """The holder cannot be reached: fence it and record the cancel here."""

        async def decide(entry: RunEntry | None) -> tuple[bytes, list[EventRecord]]:
            if entry is None or entry.state.is_terminal or entry.attempt != attempt:
                state = entry.state_name if entry is not None else "unknown"
                return p.CancelReply(run_id=run_id, state=state).dump(), []
            message = f"cancelled on request; agent {entry.agent} did not answer"
            records = [self.ledger.record_state(entry, Cancelling(message=message), close=True)]
            records.append(self.ledger.record_state(entry, Cancelled(message=message)))
            return p.CancelReply(run_id=run_id, state="Cancelled").dump(), records

        return await self.ledger.transact(run_id, decide)

    # --- janitor --------------------------------------------------------------------------

    async def _janitor(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except Exception:  # the next sweep tries again
                log.exception("janitor sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.janitor_interval)

    async def sweep(self) -> None:
        """Crash runs whose lease expired, publish what is unpublished, mark late runs (the
        leader); forget old copies of runs (a follower)."""
        now, wall = time.monotonic(), time.time()
        if not self.leadership.leading:
            self.ledger.purge(now)
            return
        for entry in list(self.ledger.entries.values()):
            if not self.leadership.leading:
                return  # the lease ran out mid-sweep
            for action in sweep_actions(
                entry, now, wall, self.settings.late_after, FOREIGN_GRACE_SECONDS
            ):
                await self._carry_out(action, entry)
        self.ledger.purge(now)
        silent = {
            n for n, a in self.agents.items() if now - a.last_seen > self.settings.lease_seconds
        }
        if silent and self.slots is not None:
            self.slots.reclaim(lambda h: h.agent in silent, "its agent stopped renewing its lease")
        for name in [n for n, a in self.agents.items() if now - a.last_seen > 3600]:
            del self.agents[name]

    async def _carry_out(self, action: Sweep, entry: RunEntry) -> None:
        if action is Sweep.EXPIRE:
            await self._expire(entry.run_id)
        elif action is Sweep.EXPIRE_PAUSE:
            await self._expire_pause(entry.run_id)
        elif action is Sweep.ARM:
            self._arm(entry)
        elif action is Sweep.RELEASE:
            await self._release(entry)
        elif action is Sweep.REPUBLISH:
            entry.foreign = False  # once: its writer may have died before it published
            await self._dispatch(entry)
        elif action is Sweep.MARK_LATE:
            await self._mark_late(entry.run_id)

    async def _expire(self, run_id: str) -> None:
        async def decide(entry: RunEntry | None) -> tuple[None, list[EventRecord]]:
            if entry is not None:
                self.ledger.renew_heard(entry)
            if entry is None or not entry.lease_expired(time.monotonic()):
                return None, []
            if await self._ahead_of_store(entry):
                # Its agent published newer states than the store holds (the recorder is
                # behind, e.g. just after an election): its agent is not dead, it finished
                # or moved on. Wait for the recorder instead of crashing a finished run.
                entry.lease_until = time.monotonic() + self.settings.lease_seconds
                return None, []
            message = f"agent {entry.agent} stopped renewing its lease"
            return None, self._crash(entry, message, **self._term())

        await self.ledger.transact(run_id, decide)
        await self._dispatch_if_queued_again(run_id)

    async def _ahead_of_store(self, entry: RunEntry) -> bool:
        """Whether the events stream holds a state of the run's open attempt that the store
        does not have yet."""
        subject = subjects.event_subject(entry.run_id, "flow_run.state")
        try:
            last = await self.js.get_last_msg(subjects.EVENTS_STREAM, subject)
            attempt = int((last.headers or {}).get(subjects.ATTEMPT_HEADER, -1))
            seq = int(orjson.loads(last.data or b"{}").get("seq", 0))
        except Exception:  # none there, or NATS away: the store's view stands
            return False
        return attempt == entry.attempt and seq > entry.seq

    async def _mark_late(self, run_id: str) -> None:
        async def decide(entry: RunEntry | None) -> tuple[None, list[EventRecord]]:
            if entry is None or entry.state is not S.SCHEDULED or entry.state_name == "Late":
                return None, []
            waited = time.time() - entry.queued_at
            message = f"not started {waited:.0f} s after it was queued"
            return None, [self.ledger.record_state(entry, Late(message=message), **self._term())]

        await self.ledger.transact(run_id, decide)

    # --- events for subscribers -----------------------------------------------------------------

    def _announce(self, records: list[EventRecord]) -> None:
        """Publish events the ledger wrote, so subscribers see every state change."""
        self.background.spawn(self._publish_recorded(records))

    async def _publish_recorded(self, records: list[EventRecord]) -> None:
        try:
            futures = [
                await self.js.publish_async(
                    subjects.event_subject(record.stream_id, record.type),
                    record.body(),
                    headers={"Nats-Msg-Id": record.id, subjects.RECORDED_HEADER: "1"},
                )
                for record in records
            ]
            await asyncio.wait_for(asyncio.gather(*futures), 10)
        except Exception as exc:  # they are in the store; only live subscribers miss them
            log.warning("could not publish recorded events", error=repr(exc))


__all__ = ["Orchestrator", "OrchestratorSettings"]
