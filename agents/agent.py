"""The worker agent: takes run requests from its work queues and runs many flow runs at once.

- Takes a request only when it has room (``concurrency``), from its queues in priority order,
  woken by a doorbell on each publication (``agents/intake.py``). In ``flowbus up`` a new run
  may instead be handed to it at its submission, while it is idle (``reserve``).
- Claims each run from the orchestrator; a refused claim (finished, cancelled, held by a live
  agent) acks the request away. A granted one runs with its events fenced by the attempt.
- Keeps each held request alive (``in_progress``) and renews leases by heartbeat; a heartbeat
  answer naming a run as lost stops it without another word.
- Acks a request once its run's final state is published; hands a run back (nak) when stopping.
- SIGTERM (``stop``): stops taking, lets runs finish for a grace period, then hands the rest
  back; a second ``stop`` hands back at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import socket
import time
from dataclasses import dataclass
from typing import Any

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from flowbus.agents.abandoned_runs import AbandonedRuns
from flowbus.agents.agent_settings import AgentSettings
from flowbus.agents.decisions.agent import AGENT_FAILED, Settle, after_refusal, after_run
from flowbus.agents.execution import InProcessRun
from flowbus.agents.flow_code import FlowCache
from flowbus.agents.intake import Intake
from flowbus.agents.lifecycle import Daemon, Loop
from flowbus.agents.local_lane import LocalLaneSink, LocalRecorder
from flowbus.agents.process_run import ChildProcessRun, RunExecution
from flowbus.agents.run_requests import ask_claim, quietly, release
from flowbus.agents.slot_client import NatsSlots
from flowbus.broker import protocol as p
from flowbus.broker import subjects, versions
from flowbus.broker.connection import manages_streams
from flowbus.broker.dead_letters import dead_letter
from flowbus.broker.event_sink import NatsEventSink
from flowbus.broker.streams import ensure_streams
from flowbus.engine.clock import now_iso

log = structlog.get_logger("flowbus.agent")


@dataclass
class _Held:
    """A run this agent holds: its request message (none for a run handed over at its
    submission), claim and execution."""

    message: Msg | None
    grant: p.ClaimGrant
    execution: RunExecution
    task: asyncio.Task[Any] | None = None


class Agent(Daemon):
    """Run flow runs from work queues until ``stop()``."""

    name = "agent"

    def __init__(
        self,
        client: Client,
        settings: AgentSettings,
        nats_url: str,
        recorder: LocalRecorder | None = None,
    ) -> None:
        """``recorder``: the leader's recorder, when it lives in this process (``flowbus
        up``): the runs' events are recorded by it directly (``agents/local_lane.py``)."""
        if settings.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        super().__init__()
        self.client = client
        self.js = client.jetstream()
        self.settings = settings
        self.nats_url = nats_url
        self.name = settings.name
        self.held: dict[str, _Held] = {}
        #: Runs whose claim is under way (not held yet).
        self._claiming: set[str] = set()
        self.counts: dict[str, int] = {}
        self._reserved = 0  # slots taken by requests still being claimed
        self._taking_hand_overs = False
        #: Cancelled runs whose threads are still blocked (see ``InProcessRun.cancel``).
        self.abandoned = AbandonedRuns()
        self._hurry = asyncio.Event()
        self.intake = Intake(client, settings.queues, settings.tick_seconds,
                             lambda: self.free, lambda: self.stopping, self._take)  # fmt: skip
        self._runs: set[asyncio.Task[Any]] = set()
        self._flows = FlowCache()
        #: Threads for sync flows: reused, so a busy agent does not make (and keep the memory
        #: arenas of) a thread per run.
        self._threads = concurrent.futures.ThreadPoolExecutor(
            settings.concurrency, thread_name_prefix="flow-run"
        )
        self._sink: NatsEventSink | None = None
        self._recorder = recorder
        self._lane: LocalLaneSink | None = None
        self._slots: NatsSlots | None = None
        self._ack_wait = 30.0
        self._started = now_iso()

    # --- life -------------------------------------------------------------------------------

    async def _wait_for_streams(self) -> None:
        """Under its own credential an agent may not make streams: the orchestrator does."""
        while True:
            try:
                for stream in (subjects.RUNS_STREAM, subjects.EVENTS_STREAM,
                               f"KV_{subjects.QUEUES_BUCKET}"):  # fmt: skip
                    await self.js.stream_info(stream)
                return
            except NotFoundError:
                log.info("waiting for an orchestrator to make flowbus's streams")
                await asyncio.sleep(1.0)

    async def open(self) -> None:
        manages = manages_streams()
        await (ensure_streams(self.js) if manages else self._wait_for_streams())
        self._ack_wait = await self.intake.open(manages, self._ack_wait)
        if self.settings.isolation == "thread":
            self._sink = await asyncio.to_thread(
                NatsEventSink, self.nats_url, f"{self.name}-events"
            )
            if self._recorder is not None:
                loop = asyncio.get_running_loop()
                self._lane = LocalLaneSink(self._sink, self._recorder, loop)
            self._slots = NatsSlots(self.client, asyncio.get_running_loop(), self.name)
        else:  # the runs' processes fork from a warm server: start it before the first run
            from flowbus.agents import warm_processes

            await asyncio.to_thread(warm_processes.warm_up)
        await self.client.subscribe(subjects.agent_cancel_subject(self.name), cb=self._on_cancel)
        await self.client.flush()  # serving means the server knows: a cancel finds it at once
        self._taking_hand_overs = True
        self.intake.ring()  # a first look at once: what waits is taken, and it knows it is idle
        log.info(
            "agent started",
            agent=self.name,
            queues=list(self.settings.queues),
            concurrency=self.settings.concurrency,
            isolation=self.settings.isolation,
        )

    def loops(self) -> dict[str, Loop]:
        return {
            "dispatch": self.intake.dispatch,
            "heartbeats": self._heartbeats,
            "keep-alive": self._keep_alive,
            "queue-settings": self.intake.watch_settings,
        }

    def stop(self) -> None:
        """First call: drain gracefully; a second call: hand back what is left at once."""
        if self.stopping:
            self._hurry.set()
        super().stop()
        self.intake.ring()

    async def drain(self) -> None:
        """Stop taking; let the runs finish for a grace period (heartbeats go on meanwhile),
        then hand the rest back."""
        self._taking_hand_overs = False  # nothing more is handed over
        await self.intake.stop_taking()
        if self.held:
            log.info(
                "waiting for runs to finish", runs=len(self.held), grace=self.settings.grace_seconds
            )
            waiting = asyncio.gather(*self._runs, return_exceptions=True)
            hurry = asyncio.create_task(self._hurry.wait())
            await asyncio.wait(
                [asyncio.ensure_future(waiting), hurry],
                timeout=self.settings.grace_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            hurry.cancel()
            for held in list(self.held.values()):
                log.info("handing a run back", run_id=held.grant.run_id)
                held.execution.hand_back(self.name)
            if self._runs:
                await asyncio.wait(self._runs, timeout=30)

    async def close(self) -> None:
        await self.intake.close()
        self._threads.shutdown(wait=False)
        if self._sink is not None:
            await asyncio.to_thread(self._sink.close)
        log.info("agent stopped", agent=self.name, **self.counts)

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    # --- taking work -------------------------------------------------------------------------

    @property
    def free(self) -> int:
        return self.settings.concurrency - len(self.held) - self._reserved - len(self.abandoned)

    def _take(self, message: Msg, queue: str) -> None:
        """A request the intake took: its slot is kept while it is claimed."""
        self._reserved += 1
        self._track(self._handle(message, queue))

    def _track(self, run: Any) -> None:
        task = asyncio.create_task(run)
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    # --- runs handed over at their submission --------------------------------------------

    def reserve(self, queue: str) -> bool:
        """Keep a slot for a run of ``queue`` that the orchestrator of this process claims for
        this agent at its submission (``start_granted``, or ``unreserve`` if it does not):
        only while the agent is idle (room free, its queues found drained and no bell rung
        since, so no request waiting in a queue is overtaken) and ``queue`` is one it serves,
        not paused and without a limit of its own (which only the queue's requests count)."""
        if (
            not self._taking_hand_overs
            or self.stopping
            or self.free <= 0
            or not self.intake.may_hand_over(queue)
        ):
            return False
        self._reserved += 1
        return True

    def unreserve(self) -> None:
        """A slot kept by ``reserve`` is not needed after all."""
        self._reserved -= 1

    def start_granted(self, grant: p.ClaimGrant) -> None:
        """Run a run claimed for this agent at its submission, in the slot ``reserve`` kept.
        No request of it is in the queue: there is none to keep alive or to settle."""
        held = self.held[grant.run_id] = _Held(None, grant, self._execution(grant))
        self._reserved -= 1
        self._count("handed_over")
        self._track(self._run_held(held))

    async def _handle(self, message: Msg, queue: str) -> None:
        held: _Held | None = None
        try:
            held = await self._claim(message, queue)
        finally:
            self._reserved -= 1
        if held is None:
            self.intake.ring()  # the slot is free again
            return
        await self._run_held(held)

    async def _run_held(self, held: _Held) -> None:
        run_id = held.grant.run_id
        self.held[run_id] = held
        try:
            outcome = await held.execution.run()
            self._count(outcome)
            isolation = self.settings.isolation
            deadline = self.settings.cancel_deadline_seconds
            await self._settle(held, after_run(outcome, isolation, self.name, deadline))
        except Exception:
            log.exception("running a flow run failed", run_id=run_id)
            await self._settle(held, AGENT_FAILED)
        finally:
            self.held.pop(run_id, None)
            self.intake.slot_freed()

    async def _claim(self, message: Msg, queue: str) -> _Held | None:
        try:
            request = p.decode(p.RunRequest, message.data, tolerant=True)
        except p.ProtocolError as exc:
            await self._dead_letter(message, str(exc))
            return None
        if request.run_id in self.held or request.run_id in self._claiming:
            # Another delivery of a request this agent runs or is claiming (its ack wait ran
            # out, or a requeue's request came with the first): the run is ours already, and a
            # claim would be answered with our own grant again: the run would run twice here.
            return None
        self._claiming.add(request.run_id)
        try:
            return await self._claim_request(message, queue, request)
        finally:
            self._claiming.discard(request.run_id)

    async def _claim_request(self, message: Msg, queue: str, request: p.RunRequest) -> _Held | None:
        claim = p.ClaimRequest(
            run_id=request.run_id, agent=self.name, delivery=message.metadata.num_delivered
        )
        reply = await ask_claim(self.client, claim, queue)
        if isinstance(reply, p.ClaimRefusal):
            self._count(f"refused_{reply.reason}")
            if reply.reason == "starting":
                # Its holder may never have heard its grant and need this request back.
                log.info("run granted to an agent that has not started it; putting it back",
                         run_id=request.run_id, detail=reply.message)  # fmt: skip
            await self._settle_message(message, after_refusal(reply, random.random()))
            return None
        self._count("claimed")
        return _Held(message, reply, self._execution(reply))

    def _execution(self, grant: p.ClaimGrant) -> RunExecution:
        if self.settings.isolation == "process":
            return ChildProcessRun(grant, self.nats_url, self.name)
        assert self._sink is not None
        deadline = self.settings.cancel_deadline_seconds
        return InProcessRun(grant, self._sink, self._flows, self._threads, self._slots,
                            cancel_deadline=deadline, lane=self._lane)  # fmt: skip

    async def _settle(self, held: _Held, settle: Settle) -> None:
        """A held run's end: the orchestrator told first (a release), then the message."""
        if settle.abandon and isinstance(held.execution, InProcessRun):
            self.abandoned.add(held.grant.run_id, held.execution)
        if settle.release is not None:
            await release(self.client, held.grant, self.name, settle.release, settle.why)
        await self._settle_message(held.message, settle)

    async def _settle_message(self, message: Msg | None, settle: Settle) -> None:
        if message is None:  # handed over at its submission: no request to settle
            return
        if settle.message == "ack":
            await quietly(message.ack())
        elif settle.message == "nak":
            await quietly(message.nak(delay=settle.delay) if settle.delay else message.nak())
        elif settle.message == "dead_letter":
            await self._dead_letter(message, settle.reason)
        # "leave": another attempt holds the run; its request is not ours to settle

    async def _dead_letter(self, message: Msg, reason: str) -> None:
        self._count("dead_lettered")
        await dead_letter(self.js, "agent", message, reason, terminate=True)

    # --- keeping runs -----------------------------------------------------------------------

    async def _keep_alive(self) -> None:
        """Tell JetStream the held requests are being worked on, well within their ack wait."""
        while True:
            await asyncio.sleep(max(self._ack_wait / 3, 0.2))
            for held in list(self.held.values()):
                if held.message is not None:
                    await quietly(held.message.in_progress())

    async def _heartbeats(self) -> None:
        """Heartbeat on a steady beat: every orchestrator hears each one, even one the leader
        does not answer (during an election), so an unanswered heartbeat must not delay the
        next one beyond its interval."""
        interval = self.settings.heartbeat_seconds
        while True:
            started = time.monotonic()
            try:
                await self._heartbeat(timeout=min(max(interval, 0.5), 5.0))
            except Exception as exc:  # the orchestrator is away: leases are renewed on its return
                log.warning("heartbeat not answered", error=repr(exc))
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _heartbeat(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a request's
        beat = p.Heartbeat(
            agent=self.name,
            queues=list(self.settings.queues),
            concurrency=self.settings.concurrency,
            runs=[
                p.HeldRun(run_id=h.grant.run_id, attempt=h.grant.attempt)
                for h in self.held.values()
            ],
            started=self._started,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            slots=self._slots.holdings() if self._slots is not None else [],
            abandoned=self.abandoned.ids(),
        )
        answer = await self.client.request(subjects.HEARTBEAT, beat.dump(), timeout=timeout,
                                          headers=versions.with_version())  # fmt: skip
        reply = p.decode(p.HeartbeatReply, answer.data, tolerant=True)
        for run_id in reply.lost:
            held = self.held.get(run_id)
            if held is not None:
                log.warning("lost a run to another attempt; stopping it", run_id=run_id)
                self._count("lost")
                held.execution.drop()

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            request = p.decode(p.AgentCancel, msg.data, tolerant=True)
        except p.ProtocolError as exc:
            await msg.respond(p.error_reply("bad_request", str(exc)))
            return
        held = self.held.get(request.run_id)
        if held is None or held.grant.attempt != request.attempt:
            await msg.respond(p.error_reply("not_held", f"agent {self.name} does not hold it"))
            return
        held.execution.cancel()
        await msg.respond(p.Ok().dump())
