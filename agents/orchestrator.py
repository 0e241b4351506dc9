"""The orchestrator: takes submissions, arbitrates claims and leases, cancels, detects dead
agents, and records every event into the store (through its recorder).

Submissions and the outbox: a submission is validated, recorded as a Scheduled run, and then its
run request is published to the queue. The store is the outbox: a run that is Scheduled and not
known to be published is published again by the janitor, and at start every Scheduled run is
(its request's ``Nats-Msg-Id`` is ``<run>:<seq of the event that queued it>``, so JetStream drops
a copy inside its duplicate window, and a claim refuses a copy after it). Killed between the write
and the publish, the run is dispatched after the restart; a copy never runs twice.

Requests are served in a queue group, as JSON (``broker/protocol.py``, docs/protocol.md).
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
        self.recorder = Recorder(client, store, ledger=self.ledger)
        self.agents: dict[str, _AgentSeen] = {}
        self.queues = QueueService(
            self.js, store, self.settings.run_ack_wait,
            lambda: (q for seen in self.agents.values() for q in seen.heartbeat.queues),
        )  # fmt: skip
        self._models: dict[tuple[str, int], type[BaseModel]] = {}
        self._deployments: dict[str, tuple[float, DeploymentView]] = {}
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.background = BackgroundTasks()
        self.scheduler: Scheduler | None = None
        self.automations: AutomationEngine | None = None
        self.slots = SlotService(client, store, self.background)
        #: No slot is granted before this (monotonic) time: two heartbeat intervals after the
        #: start, by when every live agent has reported the slots its task runs hold.
        self._limited_release = asyncio.Lock()
        #: tag -> (read at, its limit or None), from the store's ``limit`` documents.
        self._limits: dict[str, tuple[float, int | None]] = {}
        self.ledger.on_finished = self._run_finished
        #: Runs made ahead of time whose release timer is set.
        self._armed: set[str] = set()
        #: Requests answered at once (beyond it, NATS holds them in the subscription's queue).
        self._request_slots = asyncio.Semaphore(2000)
        self.counts: dict[str, int] = {}

    # --- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        await ensure_streams(self.js)
        await self.queues.open()
        loaded = await self.ledger.load()
        log.info("orchestrator starting", unfinished_runs=loaded)
        services: dict[str, tuple[type[p._Message] | None, Handler]] = {
            subjects.SUBMIT: (p.SubmitRequest, self.submit),
            subjects.CANCEL: (p.CancelRequest, self.cancel),
            subjects.CLAIM: (p.ClaimRequest, self.claim),
            subjects.HEARTBEAT: (p.Heartbeat, self.heartbeat),
            subjects.RELEASE: (p.ReleaseRequest, self.release),
            subjects.QUEUES: (None, self.queues.list_queues),
            subjects.QUEUE_UPDATE: (p.QueueUpdate, self.queues.update_queue),
            subjects.AGENTS: (None, self.list_agents),
            subjects.SLOT_ACQUIRE: (p.SlotRequest, self.slots.acquire),
            subjects.SLOT_RELEASE: (p.SlotRelease, self.slots.release),
            subjects.LIMITS: (None, self.slots.list_limits),
            subjects.RESUME: (p.ResumeRequest, self.resume),
        }
        settle = 2 * self.settings.heartbeat_seconds + 0.5
        self.slots.settle(settle)  # before any slot request comes
        for subject, (model, handler) in services.items():
            await self.client.subscribe(
                subject,
                queue=subjects.ORCHESTRATOR_GROUP,
                cb=self._service(subject, model, handler),
            )
        # Heartbeats can arrive from now on: the leases of the runs loaded count from here.
        self.ledger.renew_all()
        # The slots granted before this start are known once every live agent has reported
        # them in a heartbeat: nothing is granted for two heartbeat intervals.
        self.slots.settle(settle)
        self._tasks.append(asyncio.create_task(self.recorder.run(), name="recorder"))
        self._tasks.append(asyncio.create_task(self._janitor(), name="janitor"))
        if self.settings.scheduler:
            self.scheduler = Scheduler(self.client, self.store)
            self._tasks.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
        if self.settings.automations:
            self.automations = AutomationEngine(self.client, self.store)
            await self.automations.open()  # its consumers exist before "serving" is said
            self._tasks.append(asyncio.create_task(self.automations.run(), name="automations"))

    async def run(self) -> None:
        """Start, then serve until ``stop()`` (or until a daemon task fails)."""
        await self.start()
        stopping = asyncio.create_task(self._stopping.wait())
        done, _ = await asyncio.wait([*self._tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        await self.close()
        for task in done:
            if task is not stopping and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    def stop(self) -> None:
        self._stopping.set()
        self.recorder.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.automations is not None:
            self.automations.stop()

    async def close(self) -> None:
        self.recorder.stop()
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
            if msg.reply:
                await self.client.publish(msg.reply, reply)

        return dispatch

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        # A request (core NATS): the reply already says why; the dead letter is for operators.
        await dead_letter(self.js, "orchestrator", msg, reason, terminate=False)

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
            )
            self.ledger.add(entry)
            reply = p.SubmitReply(run_id=run_id, name=name, queue=deployment.queue, created=True)
            return reply.dump(), [record]

        reply = await self.ledger.transact(run_id, decide)
        entry = self.ledger.entries.get(run_id)
        if entry is not None and not entry.published and entry.seq == 1:
            crash_point("after-schedule-write")  # recorded, not published: the outbox test
            if entry.due_at > time.time():
                self._arm(entry)
            else:
                await self._release(entry)
        self._count("submitted")
        return reply

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
        if entry is not None and entry.state is S.SCHEDULED and not entry.published:
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
            refusal = _claim_refusal(entry)
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
        now = time.monotonic()
        self.agents[beat.agent] = _AgentSeen(beat, now)
        self.slots.adopt(beat.agent, beat.slots)  # after a restart, earlier grants count again
        lost = []
        async with self.ledger.lock:
            for held in beat.runs:
                entry = self.ledger.entries.get(held.run_id)
                if (
                    entry is not None
                    and entry.open
                    and entry.agent == beat.agent
                    and entry.attempt == held.attempt
                ):
                    entry.lease_until = now + self.settings.lease_seconds
                else:
                    lost.append(held.run_id)
        return p.HeartbeatReply(lost=lost, lease_seconds=self.settings.lease_seconds).dump()

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
            entry.open = False
            message = request.message or f"handed back by agent {request.agent}"
            record = self.ledger.record_state(entry, Scheduled(message=message))
            entry.published = True  # the agent naks the request: it comes back by itself
            return p.Ok().dump(), [record]

        reply = await self.ledger.transact(request.run_id, decide)
        await self._dispatch_if_queued_again(request.run_id)
        return reply

    def _crash(self, entry: RunEntry, message: str) -> list[EventRecord]:
        """Fence the run's attempt and end it Crashed; queue it again if retries are left."""
        entry.open = False
        if entry.state is S.CANCELLING:  # it was being cancelled when its agent died
            return [self.ledger.record_state(entry, Cancelled(message=message))]
        records = [self.ledger.record_state(entry, Crashed(message=message))]
        if entry.crashes <= entry.retries:
            again = f"{message}; queued again (retry {entry.crashes} of {entry.retries})"
            records.append(self.ledger.record_state(entry, AwaitingRetry(message=again)))
            entry.published = False
        self._count("crashed")
        log.warning(
            "run crashed", run_id=entry.run_id, reason=message, requeued=not entry.published
        )
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
        self.slots.reclaim(lambda h: h.run_id == entry.run_id, "its flow run ended")
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
            return None, [self.ledger.record_state(entry, Failed(message=message))]

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
            entry.open = False
            record = self.ledger.record_state(entry, Cancelled(message="cancelled on request"))
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
            entry.open = False
            message = f"cancelled on request; agent {entry.agent} did not answer"
            records = [self.ledger.record_state(entry, Cancelling(message=message))]
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
        """Crash runs whose lease expired, publish what is unpublished, mark late runs."""
        now, wall = time.monotonic(), time.time()
        entries = list(self.ledger.entries.values())
        for entry in entries:
            if entry.lease_expired(now):
                await self._expire(entry.run_id)
            elif entry.state is S.PAUSED and entry.pause_deadline < wall:
                await self._expire_pause(entry.run_id)
            elif entry.state is S.SCHEDULED and not entry.published:
                if entry.due_at > wall:
                    self._arm(entry)
                else:
                    await self._release(entry)
            if (
                entry.state is S.SCHEDULED
                and entry.state_name != "Late"
                and wall - entry.queued_at > self.settings.late_after
            ):
                await self._mark_late(entry.run_id)
        self.ledger.purge(now)
        silent = {
            n for n, a in self.agents.items() if now - a.last_seen > self.settings.lease_seconds
        }
        if silent:
            self.slots.reclaim(lambda h: h.agent in silent, "its agent stopped renewing its lease")
        for name in [n for n, a in self.agents.items() if now - a.last_seen > 3600]:
            del self.agents[name]

    async def _expire(self, run_id: str) -> None:
        async def decide(entry: RunEntry | None) -> tuple[None, list[EventRecord]]:
            if entry is None or not entry.lease_expired(time.monotonic()):
                return None, []
            return None, self._crash(entry, f"agent {entry.agent} stopped renewing its lease")

        await self.ledger.transact(run_id, decide)
        await self._dispatch_if_queued_again(run_id)

    async def _mark_late(self, run_id: str) -> None:
        async def decide(entry: RunEntry | None) -> tuple[None, list[EventRecord]]:
            if entry is None or entry.state is not S.SCHEDULED or entry.state_name == "Late":
                return None, []
            waited = time.time() - entry.queued_at
            message = f"not started {waited:.0f} s after it was queued"
            return None, [self.ledger.record_state(entry, Late(message=message))]

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


def _claim_refusal(entry: RunEntry) -> p.ClaimRefusal | None:
    if entry.state is S.CANCELLED or entry.state is S.CANCELLING:
        return p.ClaimRefusal(reason="cancelled", message=f"run is {entry.state_name}")
    if entry.state.is_terminal:
        return p.ClaimRefusal(reason="finished", message=f"run is {entry.state_name}")
    if entry.held:
        return p.ClaimRefusal(
            reason="leased", message=f"run is held by agent {entry.agent} (attempt {entry.attempt})"
        )
    if entry.state is not S.SCHEDULED:
        return p.ClaimRefusal(reason="illegal", message=f"run is {entry.state_name}")
    return None


__all__ = ["Orchestrator", "OrchestratorSettings"]
