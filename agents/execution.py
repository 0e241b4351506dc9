"""Executing one claimed flow run in the agent's process (``InProcessRun``); in a child process of
its own, ``agents/process_run.py`` starts that child, which runs it here too (``agents/child.py``).

Either way the run continues the stream the orchestrator started (after the claim's event) and
publishes its events, fenced by the claim's attempt. A missing or broken entrypoint, or parameters
the flow's signature refuses, end the run Failed with the error: the agent itself never fails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import ctypes
import threading
import time
from typing import Any

import structlog
from nats.errors import Error as NatsError

from flowbus.agents.decisions.agent import Outcome
from flowbus.agents.flow_code import FlowCache
from flowbus.agents.local_lane import LocalLaneSink
from flowbus.agents.run_documents import NatsDocuments
from flowbus.broker import protocol as p
from flowbus.broker import subjects, versions
from flowbus.broker.errors import BrokerError
from flowbus.broker.event_sink import FencedSink, NatsEventSink
from flowbus.broker.protocol import ClaimGrant
from flowbus.engine.concurrency import SlotProvider, slot_provider_var
from flowbus.engine.context import RunStream
from flowbus.engine.entrypoints import EntrypointError
from flowbus.engine.errors import FlowbusError
from flowbus.engine.event_types import EventType
from flowbus.engine.flow_engine import ClaimedRun, FlowRunEngine
from flowbus.engine.loops import run_sync
from flowbus.engine.records import EventRecord, state_dict
from flowbus.engine.replay import ReplayEntry
from flowbus.engine.run_documents import run_documents_var
from flowbus.engine.states import Cancelled, Cancelling, Crashed, Failed, Pending, Scheduled
from flowbus.engine.tracing import traced

log = structlog.get_logger("flowbus.agent")
#: How long a sync flow's thread may take to unwind by itself after a cancel before the
#: exception is raised in it.
STOP_GRACE_SECONDS = 0.5


#: How long a run's flush waits for its events to be published through NATS trouble, and how
#: long one try of it may take before it is tried again.
FLUSH_PATIENCE = 300.0
FLUSH_TRY_SECONDS = 10.0


class _LeaseSink:
    """A claimed run's sink that goes quiet once the run is lost to another attempt."""

    def __init__(self, base: FencedSink) -> None:
        self.base = base
        self.lost = False

    def emit(self, record: EventRecord) -> None:
        if not self.lost:
            self.base.emit(record)

    def flush(self, timeout: float | None = None) -> None:
        self.base.flush(timeout)

    async def flush_async(self) -> None:
        """Until JetStream has every event emitted before: through a broker restart or a
        reconnect too (the sink keeps a batch whose acks the old connection took with it, and
        publishes it again), so the engine's last flush waits it out rather than failing the
        run's engine. Each try is bounded; a run lost to another attempt stops waiting."""
        deadline = time.monotonic() + FLUSH_PATIENCE
        while True:
            try:
                async with asyncio.timeout(FLUSH_TRY_SECONDS):  # no task of its own
                    await self.base.flush_async()
                return
            except (BrokerError, TimeoutError) as exc:
                if self.lost or time.monotonic() > deadline:
                    raise
                log.warning("run events not published yet; retrying", error=str(exc))
                await asyncio.sleep(0.2)


class InProcessRun:
    """A claimed run executed here: async flows on the agent's loop, sync ones in a thread."""

    def __init__(
        self,
        grant: ClaimGrant,
        sink: NatsEventSink,
        flows: FlowCache,
        threads: concurrent.futures.ThreadPoolExecutor | None = None,
        slots: SlotProvider | None = None,
        cancel_deadline: float = 5.0,
        lane: LocalLaneSink | None = None,
    ) -> None:
        """``lane``: the run's events are recorded by the orchestrator of this process
        (``agents/local_lane.py``) rather than published for its recorder to pull."""
        self.grant = grant
        self.slots = slots
        self.threads = threads
        self.cancel_deadline = cancel_deadline
        #: Set when the flow's thread returns (at once for an async flow).
        self.thread_ended = asyncio.Event()
        self._abandoned = False
        base = lane if lane is not None else sink
        self.sink = _LeaseSink(FencedSink(base, grant.run_id, grant.attempt, grant.attempt_key))
        self.nats = sink
        self.flows = flows
        self.engine: FlowRunEngine | None = None
        self._task: asyncio.Future[Any] | None = None
        self._thread_id: int | None = None
        self._pending_interrupt: tuple[Any, Any] | None = None

    async def run(self) -> Outcome:
        grant = self.grant
        try:
            loaded = self.flows.load(grant.entrypoint, grant.working_dir)
            flow = loaded.flow
            parameters = grant.parameters
            if flow.should_validate_parameters:
                parameters = flow.parameters.validate(parameters)
        except (EntrypointError, FlowbusError) as exc:
            self._fail_early(str(exc))
            await self._flush()
            return "finished"
        except Exception as exc:  # a validator of the user's raising something odd
            self._fail_early(f"{type(exc).__name__}: {exc}")
            await self._flush()
            return "finished"
        replay = await fetch_replay(self.nats, grant) if grant.attempt > 1 else []
        scheduled = grant.scheduled_time.isoformat() if grant.scheduled_time else None
        claimed = ClaimedRun(grant.run_id, grant.name, grant.seq, Pending(), list(grant.tags),
                             dict(grant.resumes), grant.deployment, grant.attempt,
                             replay, loaded.code_hash, scheduled)  # fmt: skip
        # Traced when OpenTelemetry is configured: the run's span starts at its claim.
        sink = traced(self.sink, {grant.run_id: (grant.name, grant.flow_name, grant.deployment)})
        # Not durable by itself: ``_settle`` awaits the sink on this loop, where the flow's
        # thread would block on it and be woken for nothing more than to end.
        engine = self.engine = FlowRunEngine(flow, parameters, claimed=claimed, sink=sink,
                                             durable=False)  # fmt: skip
        if self._pending_interrupt is not None:
            engine.interrupt(*self._pending_interrupt)
        slot_provider_var.set(self.slots)  # this run's task (and its threads) see it
        # Its blocks, variables and artifacts come from the orchestrator, not from a store.
        run_documents_var.set(NatsDocuments(self.nats.client, self.nats.loop, grant))
        try:
            if flow.is_async:
                self._task = asyncio.ensure_future(engine.run())
                await self._task
            else:
                await self._in_thread(engine)
        except asyncio.CancelledError:
            if engine.interruption is None and not self.sink.lost:
                raise  # the agent itself is being cancelled
        except BaseException as exc:  # the engine failed (say, the sink could not publish)
            log.error("flow run engine failed", run_id=grant.run_id, error=repr(exc))
        return await self._settle(engine)

    async def _in_thread(self, engine: FlowRunEngine) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def main() -> None:
            self._thread_id = threading.get_ident()
            try:
                run_sync(engine.run())
                outcome: BaseException | None = None
            except BaseException as exc:
                outcome = exc
            finally:
                self._thread_id = None
            loop.call_soon_threadsafe(_settle_future, done, outcome)
            loop.call_soon_threadsafe(self.thread_ended.set)

        context = contextvars.copy_context()  # the slot provider goes along to the thread
        if self.threads is not None:
            self.threads.submit(context.run, main)
        else:
            threading.Thread(target=context.run, args=(main,), name="flow-run", daemon=True).start()
        self._task = done
        await done

    async def _settle(self, engine: FlowRunEngine) -> Outcome:
        if self._abandoned:
            return "cancelled"  # the agent records it; the thread's late events are fenced
        if self.sink.lost:
            return "lost"
        state = engine.flow_run.state
        parked = state is not None and state.is_paused()  # pause_flow_run: it waits, unheld
        if state is None or not (state.is_final() or parked or state is engine.interruption):
            # It ended without a last word (an error inside the engine): say so now.
            engine.interrupt(Crashed(message="the flow run's engine stopped unexpectedly"))
            engine._set_state(Crashed())
        await self._flush()
        interruption = engine.interruption
        if interruption is not None and interruption.is_scheduled():
            return "handed_back"
        return "finished"

    async def _flush(self) -> None:
        """Until JetStream has the run's events (the sink waits out NATS trouble); a run lost
        meanwhile to another attempt has nothing more to wait for (its events are fenced)."""
        try:
            await self.sink.flush_async()
        except (BrokerError, TimeoutError):
            if not self.sink.lost:
                raise

    def _fail_early(self, message: str) -> None:
        """The run cannot start (entrypoint, parameters): record it Failed."""
        stream = RunStream(self.grant.run_id, self.sink, self.grant.seq)
        failed = Failed(message=message)
        stream.emit(EventType.FLOW_RUN_STATE, {"state": state_dict(failed), "result": None})
        log.warning("flow run failed before starting", run_id=self.grant.run_id, error=message)

    # --- from outside ----------------------------------------------------------------------

    def cancel(self) -> None:
        """Interrupt the flow (cooperative: at its next bytecode). A sync flow still blocked in
        a call ``cancel_deadline`` seconds later is given up: the run ends ``cancelled`` now and
        its thread, abandoned, publishes nothing more."""
        self._interrupt(Cancelled(message="cancelled on request"), Cancelling())
        if self._thread_id is not None:
            asyncio.get_running_loop().call_later(self.cancel_deadline, self._give_up)

    def _give_up(self) -> None:
        done = self._task
        if self._thread_id is None or done is None or done.done():
            return  # it ended in time
        self._abandoned = True
        self.sink.lost = True  # whatever the thread emits from now on is dropped
        _settle_future(done, None)

    def hand_back(self, agent: str) -> None:
        self._interrupt(Scheduled(message=f"handed back by agent {agent}, which is stopping"))

    def drop(self) -> None:
        """Another attempt holds the run now: stop it without another event."""
        self.sink.lost = True
        self._stop_code()

    def _interrupt(self, final: Any, announce: Any = None) -> None:
        if self.engine is None:
            self._pending_interrupt = (final, announce)
            return
        if self.engine.interrupt(final, announce):
            self._stop_code()

    def _stop_code(self) -> None:
        if self._thread_id is not None:
            # A sync flow: what waits on the run's interrupt (a retry delay) has stopped waiting
            # and unwinds by itself; code that does not return soon gets the exception raised
            # in its thread, at its next bytecode.
            asyncio.get_running_loop().call_later(STOP_GRACE_SECONDS, self._raise_in_thread)
        elif self._task is not None:
            self._task.cancel()

    def _raise_in_thread(self) -> None:
        if self._thread_id is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._thread_id), ctypes.py_object(asyncio.CancelledError)
            )


#: How long an attempt after the first waits for its replay table (an orchestrator killed just
#: after the claim is replaced within seconds) before its tasks run again without it.
REPLAY_PATIENCE_SECONDS = 60.0


async def fetch_replay(sink: NatsEventSink, grant: ClaimGrant) -> list[ReplayEntry]:
    """The task runs earlier attempts of the run completed, which this attempt replays. Asked
    again while no orchestrator answers (one may be restarting), for a minute; after that the
    run goes on without them: its tasks run again (at-least-once), which is what a run
    without replay does anyway."""
    deadline = time.monotonic() + REPLAY_PATIENCE_SECONDS
    while True:
        try:
            return await _replay_pages(sink, grant)
        except (NatsError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                log.warning("replay table not read; the run's tasks run again",
                            run_id=grant.run_id, error=repr(exc) or type(exc).__name__)  # fmt: skip
                return []
            await asyncio.sleep(0.5)
        except ValueError as exc:  # an answer that is not a replay table: asking again won't help
            log.warning("replay table unreadable; the run's tasks run again",
                        run_id=grant.run_id, error=repr(exc))  # fmt: skip
            return []


async def _replay_pages(sink: NatsEventSink, grant: ClaimGrant) -> list[ReplayEntry]:
    request = p.ReplayRequest(run_id=grant.run_id)
    entries: list[ReplayEntry] = []
    while True:
        reply = await _on_loop(
            sink.loop,
            sink.client.request(
                subjects.REPLAY, request.dump(), timeout=10, headers=versions.with_version()
            ),
        )
        page = p.decode(p.ReplayReply, reply.data, tolerant=True)
        entries += [ReplayEntry.from_dict(item) for item in page.entries]
        if not page.more:
            return entries
        request = p.ReplayRequest(run_id=grant.run_id, offset=len(entries))


async def _on_loop(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    """Await ``coro`` on ``loop`` (a NATS client's), from whichever loop runs this."""
    if asyncio.get_running_loop() is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


def _settle_future(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None or isinstance(error, asyncio.CancelledError):
        future.set_result(None)
    else:
        future.set_exception(error)
