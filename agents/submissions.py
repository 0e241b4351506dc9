"""Submissions and the outbox: a submission is validated, recorded as a Scheduled run, and then
its run request is published to the queue. The store is the outbox: a run that is Scheduled
and not known to be published is published again by the leader's janitor, and when a leader
is elected every Scheduled run is (its request's ``Nats-Msg-Id`` is ``<run>:<seq of the event
that queued it>``, so JetStream drops a copy inside its duplicate window, and a claim refuses a
copy after it). Killed between the write and the publish, the run is dispatched by the next
leader; a copy never runs twice. A request is published only after its run is committed.

Runs due later, a schedule's runs (overlap policy) and the runs of a deployment with a
concurrency limit are released by the leader (``decisions.released_by_leader``), which keeps
the timers and the count of each deployment's runs under way."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import structlog
from pydantic import ValidationError

from flowbus.agents.decisions import (
    released_by_leader,
)
from flowbus.agents.ledger import RunEntry
from flowbus.agents.orchestrator_core import OrchestratorCore
from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.engine.clock import canonical
from flowbus.engine.deployments import NAMESPACE
from flowbus.engine.faults import crash_point
from flowbus.engine.ids import new_id
from flowbus.engine.names import generate_run_name
from flowbus.engine.records import EventRecord, make_record, state_dict
from flowbus.engine.schema_model import model_from_schema
from flowbus.engine.states import (
    Cancelled,
    Scheduled,
    StateType,
)
from flowbus.engine.store import DeploymentView

log = structlog.get_logger("flowbus.orchestrator")
S = StateType

#: States in which a deployment's run counts as still running for the overlap policy.
OVERLAPPING = frozenset({S.PENDING, S.RUNNING, S.CANCELLING, S.PAUSED})


class Submissions(OrchestratorCore):
    """Submit, publish (dispatch), and release runs that wait for their time or their deployment."""

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
                return await self._existing_submission(run_id, entry, parameters), []
            state = Scheduled(message=f"for {canonical(due)}" if due else None)
            name = generate_run_name()
            tags = list(dict.fromkeys([*deployment.tags, *request.tags]))
            fields = {
                "flow_name": deployment.flow_name,
                "name": name,
                "flow_version": None,
                "parameters": parameters,
                "tags": tags,
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
                tags=tags,
                queued_at=due.timestamp() if due else time.time(),
                crash_retries=await self.ledger.crash_retries_of(deployment.name),
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

    def _validate(self, deployment: DeploymentView, given: dict[str, Any]) -> dict[str, Any]:
        key = (deployment.name, deployment.version)
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = model_from_schema(deployment.parameter_schema)
            self.ledger.forget_deployment(deployment.name)  # a redeploy may change retries
        validated = model.model_validate({**deployment.parameters, **given})
        return validated.model_dump(mode="json")

    async def _existing_submission(
        self, run_id: str, entry: RunEntry | None, parameters: dict[str, Any]
    ) -> bytes:
        """The run an idempotency key already made; a conflict if it was made with other
        parameters (the same key must mean the same request)."""
        view = await self.store.get_flow_run(run_id) if entry is None else None
        if entry is not None:
            name, queue, given = entry.name, entry.queue, entry.parameters
        else:
            name = view.name if view else run_id
            given = view.parameters if view else parameters
            queue = ""
            if view is not None and view.deployment:
                deployment = await self.store.get_deployment(view.deployment)
                queue = deployment.queue if deployment else ""
        if given != parameters:
            return p.error_reply(
                "idempotency_conflict",
                f"the idempotency key already made run {run_id} ({name}) with other parameters",
                {"run_id": run_id, "parameters": given},
            )
        return p.SubmitReply(run_id=run_id, name=name, queue=queue, created=False).dump()

    async def _dispatch(self, entry: RunEntry, msg_id: str | None = None) -> None:
        """Publish the run's request to its queue (the outbox's second half). Its message id
        (``msg_id``, by default ``<run>:<seq of the event that queued it>``) lets JetStream drop
        a copy; the queue audit gives a fresh one to a request JetStream lost."""
        try:
            await self.queues.ensure(entry.queue)
            request = p.RunRequest(
                run_id=entry.run_id, deployment=entry.deployment, dispatch=entry.queued_seq
            )
            await self.js.publish(
                subjects.run_subject(entry.queue),
                request.dump(),
                timeout=5,
                headers={"Nats-Msg-Id": msg_id or f"{entry.run_id}:{entry.queued_seq}"},
            )
        except Exception as exc:  # the janitor publishes it again
            log.warning("could not publish a run request", run_id=entry.run_id, error=repr(exc))
            return
        entry.published = True

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
