"""The life of one flow run, written once as a coroutine (sync bodies are called in place)."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from flowbus.engine.caching import stable_hash
from flowbus.engine.clock import canonical
from flowbus.engine.concurrency import slot_provider_var, slots_by_hand
from flowbus.engine.context import (
    FlowRun,
    FlowRunContext,
    RunStream,
    flow_run_var,
    tags_var,
    task_run_var,
)
from flowbus.engine.errors import TaskRunTimeout, TransitionRejected
from flowbus.engine.event_types import EventType
from flowbus.engine.futures import TaskRunFuture, wait_all
from flowbus.engine.ids import new_id
from flowbus.engine.invoke import call_user_function
from flowbus.engine.pause import FlowRunPaused
from flowbus.engine.records import json_safe, state_dict, summarize
from flowbus.engine.replay import REPLAYED, SUBFLOW, ReplayEntry, ReplayTable
from flowbus.engine.results import ResultMissing, decode_output, inline_output, stored_output
from flowbus.engine.retries import next_delay
from flowbus.engine.run_endings import failure_details, returned_state, run_hooks
from flowbus.engine.run_logging import console, install_print_capture
from flowbus.engine.sinks import EventSink, current_sink
from flowbus.engine.states import (
    AwaitingRetry,
    Completed,
    Crashed,
    Failed,
    Paused,
    Pending,
    Retrying,
    Running,
    State,
    TimedOut,
)
from flowbus.engine.transitions import decide

if TYPE_CHECKING:
    from flowbus.engine.flows import Flow


async def make_durable(sink: EventSink) -> None:
    """Wait until the sink has every event on disk, without blocking a running loop."""
    loop = asyncio.get_running_loop()
    if loop.is_running():
        flush_async = getattr(sink, "flush_async", None)
        if flush_async is not None:  # a sink that can be awaited holds no thread meanwhile
            await flush_async()
        else:
            await loop.run_in_executor(None, sink.flush)
    else:
        sink.flush()  # stepped synchronously by run_sync: blocking here is the caller's wish


@dataclass(frozen=True)
class ClaimedRun:
    """A flow run created elsewhere (by the orchestrator) and claimed by this process.

    The engine continues its stream after ``seq`` (the claim's event) from ``state`` (Pending)
    instead of creating a run of its own.
    """

    id: str
    name: str
    seq: int
    state: State
    tags: list[str] = field(default_factory=list)
    #: Inputs of its pauses already resumed (see ``pause_flow_run``).
    resumes: dict[str, Any] = field(default_factory=dict)
    #: ``flow/deployment`` it was queued for.
    deployment: str | None = None
    #: The claim's attempt, and the task runs earlier attempts completed (replayed, not run).
    attempt: int = 0
    replay: list[ReplayEntry] = field(default_factory=list)
    #: The SHA-256 of the entrypoint's file as loaded: recorded with the attempt's Running.
    code_hash: str | None = None
    #: The slot it was scheduled for (ISO 8601), if any: ``runtime.flow_run.scheduled_start_time``.
    scheduled_time: str | None = None


class FlowRunEngine:
    """Drives one flow run; ``run()`` returns the final state once its events are durable.

    ``interrupt()`` ends it from outside (a cancel, an agent handing the run back): the state it
    is given becomes the run's last, whatever the flow does after.

    ``durable=False``: ``run()`` returns once the events are emitted, and its caller makes them
    durable (an agent awaits its sink on its loop, where the flow's thread would block on it).
    """

    def __init__(
        self,
        flow: Flow[..., Any],
        parameters: dict[str, Any],
        claimed: ClaimedRun | None = None,
        sink: EventSink | None = None,
        durable: bool = True,
    ) -> None:
        self.flow = flow
        self.parameters = parameters
        self.durable = durable
        parent = flow_run_var.get()
        parent_task = task_run_var.get()
        self.sink = sink or (parent.stream.sink if parent else current_sink())
        run_id = claimed.id if claimed else new_id()
        self.stream = RunStream(run_id, self.sink, claimed.seq if claimed else 0)
        self.flow_run = FlowRun(
            id=run_id,
            name=claimed.name if claimed else "",
            flow_name=flow.name,
            parameters=parameters,
            tags=list(claimed.tags) if claimed else _with_context_tags(flow.tags),
            parent_run_id=parent.flow_run.id if parent else None,
            parent_task_run_id=parent_task.task_run.id if parent_task else None,
            state=claimed.state if claimed else None,
            deployment=claimed.deployment if claimed else None,
        )
        self.code_hash = claimed.code_hash if claimed else None
        if claimed is not None and claimed.scheduled_time:
            self.flow_run.expected_start_time = claimed.scheduled_time
        #: Set by ``interrupt``: the state the run ends in instead of whatever comes next.
        self.interruption: State | None = None
        # Held while a state is decided and emitted: an interrupt from another thread must not
        # slip between the flow's own decision and its event.
        self._state_lock = threading.RLock()
        log_prints = flow.log_prints
        if log_prints is None:
            log_prints = parent.log_prints if parent else False
        if log_prints:
            install_print_capture()
        self.context = FlowRunContext(
            flow, self.flow_run, self.stream, flow.task_runner.duplicate(), log_prints
        )
        self.context.resumes = dict(claimed.resumes) if claimed else None
        if not claimed:  # a name function may read ``runtime.flow_run.parameters``
            token = flow_run_var.set(self.context)
            try:
                self.flow_run.name = flow.render_run_name(parameters)
            finally:
                flow_run_var.reset(token)
        # A deployed run records its results, so an attempt after this one can replay them; a
        # subflow does as its parent does; a run by hand does with ``persist_result=True``.
        recording = (
            claimed is not None
            or (parent is not None and parent.record_results)
            or bool(flow.persist_result)
        )
        if recording:
            self.context.record_results = True
            self.context.replay = ReplayTable(claimed.replay if claimed else ())
            self.context.attempt = claimed.attempt if claimed else parent.attempt if parent else 0
        #: A subflow's identity in its parent's replay table (when the parent records results).
        self.parent = parent
        self.identity: dict[str, Any] | None = None
        if parent is not None and parent.record_results:
            _, position = parent.next_index(SUBFLOW + flow.name)
            self.identity = {"position": position, "parent_attempt": parent.attempt,
                             "input_hash": stable_hash(flow.name, parameters)}  # fmt: skip

    def interrupt(self, final: State, announce: State | None = None) -> bool:
        """Make ``final`` the run's last state (after ``announce``, e.g. Cancelling).

        Returns False when the run has already finished. The caller then stops the run's code
        (cancels its task, or interrupts its thread); the engine records ``final`` as it unwinds.
        """
        with self._state_lock:
            current = self.flow_run.state
            if self.interruption is not None or (current is not None and current.is_final()):
                return False
            if announce is not None:
                self._set_state(announce)
            self.interruption = final
        self.context.interrupt.set()  # a task waiting out a retry delay stops waiting now
        return True

    def _set_state(
        self, state: State, result: str | None = None, extra: dict[str, Any] | None = None
    ) -> State:
        with self._state_lock:
            if self.interruption is not None:
                if self.flow_run.state is self.interruption:
                    return self.interruption  # already recorded: the run is over
                state, result, extra = self.interruption, None, None
            return self._record_state(state, result, extra)

    def _record_state(
        self, state: State, result: str | None, extra: dict[str, Any] | None = None
    ) -> State:
        current = self.flow_run.state
        verdict = decide(current.type if current else None, state.type)
        if not verdict:
            raise TransitionRejected(f"flow run {self.flow_run.name!r}: {verdict.reason}")
        self.flow_run.state = state
        run = self.flow_run
        if current is None:
            self.stream.emit(
                EventType.FLOW_RUN_CREATED,
                {
                    "flow_name": run.flow_name,
                    "name": run.name,
                    "flow_version": self.flow.version,
                    "parameters": {k: json_safe(v) for k, v in run.parameters.items()},
                    "tags": run.tags,
                    "parent_run_id": run.parent_run_id,
                    "parent_task_run_id": run.parent_task_run_id,
                    "deployment": None,
                    **(self.identity or {}),
                    "state": state_dict(state),
                },
                state.timestamp_iso,
            )
        else:
            fields = {"state": state_dict(state), "result": result, **(extra or {})}
            self.stream.emit(EventType.FLOW_RUN_STATE, fields, state.timestamp_iso)
        return state

    async def run(self) -> State:
        flow = self.flow
        if self.flow_run.state is None:
            self._set_state(Pending())
            replayed = await self._replay()
            if replayed is not None:
                if self.durable:
                    await make_durable(self.sink)
                return replayed
        console(
            logging.INFO,
            f"Flow run {self.flow_run.name!r}",
            f"Beginning flow run for flow {flow.name!r}",
        )
        flow_token = flow_run_var.set(self.context)
        task_token = task_run_var.set(None)
        # A run by hand (an agent sets its own first) finds its slots once, not per task run.
        slots_token = (
            slot_provider_var.set(slots_by_hand()) if not slot_provider_var.get() else None
        )
        try:
            state = await self._attempts()
        finally:
            if slots_token is not None:
                slot_provider_var.reset(slots_token)
            task_run_var.reset(task_token)
            flow_run_var.reset(flow_token)
            self.context.task_runner.shutdown()
        hooks = flow.final_hooks(state)
        if hooks:
            await run_hooks(hooks, flow, self.flow_run, state)
        level = logging.INFO if state.is_completed() or state.is_paused() else logging.ERROR
        console(level, f"Flow run {self.flow_run.name!r}", f"Finished in state {state!r}")
        if self.durable:
            await make_durable(self.sink)
        return state

    async def _attempts(self) -> State:
        flow = self.flow
        args, kwargs = flow.parameters.call_arguments(self.parameters)
        for attempt in range(flow.retries + 1):
            self.flow_run.run_count = attempt + 1
            self.context.submitted = []
            self.context.positions = {}  # call positions count from 0 in each try
            code = {"code_hash": self.code_hash} if self.code_hash and not attempt else None
            running = self._set_state(Retrying() if attempt else Running(), None, code)
            if flow.on_running_hooks:
                await run_hooks(flow.on_running_hooks, flow, self.flow_run, running)
            try:
                result = await call_user_function(
                    flow.fn, flow.is_async, args, kwargs, flow.timeout_seconds
                )
                result = await self._settle(result)
            except FlowRunPaused as paused:
                await self._settle_quietly()  # task runs under way finish first
                until = datetime.now(UTC) + timedelta(seconds=paused.timeout)
                extra = {"pause_key": paused.key, "pause_timeout_at": canonical(until),
                         "input_schema": paused.input_schema}  # fmt: skip
                message = f"paused at {paused.key}; resume before {canonical(until)}"
                return self._set_state(Paused(message=message), None, extra)
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit) as exc:
                # Interrupted: say so at once; do not wait for submitted task runs.
                self._set_state(Crashed(message=f"interrupted: {type(exc).__name__}"))
                raise
            except Exception as exc:
                if not isinstance(exc, TaskRunTimeout):  # a timed-out flow does not wait either
                    await self._settle_quietly()
                message, tb = failure_details(exc)
                make = TimedOut if isinstance(exc, TaskRunTimeout) else Failed
                failed = make(message=message, data=exc, traceback=tb)
                if attempt < flow.retries:
                    delay = next_delay(attempt + 1, flow.retry_delays, None)
                    self._set_state(AwaitingRetry(message=message, traceback=tb))
                    try:  # a cancel ends the delay at once (the interruption is recorded)
                        await self.context.interrupt.sleep(max(delay, 0.0))
                    except asyncio.CancelledError:
                        self._set_state(Crashed(message="interrupted during a retry delay"))
                        raise
                    continue
                return self._set_state(failed)
            final = returned_state(result) if isinstance(result, State) else Completed(data=result)
            if not final.is_completed():  # the flow returned a final state that is not success
                return self._set_state(final)
            recorded = await self._output(final.data)
            fields: dict[str, Any] | None = {"output": recorded} if recorded is not None else None
            if recorded is not None:
                self._remember(recorded)
            return self._set_state(final, summarize(final.data), fields)
        raise AssertionError("unreachable: the last attempt always returns")

    async def _replay(self) -> State | None:
        """A subflow whose call completed in an earlier attempt of its parent: Completed with
        that result, named Replayed, without running (None: it runs)."""
        parent, identity = self.parent, self.identity
        table = parent.replay if parent is not None else None
        if table is None or identity is None:
            return None
        key = SUBFLOW + self.flow.name
        entry = table.match(key, identity["position"], identity["input_hash"])
        if entry is None:
            return None
        try:
            value = await asyncio.to_thread(decode_output, entry.output)
        except ResultMissing as exc:
            console(logging.WARNING, "flowbus.engine", f"{exc}; running the subflow again")
            return None
        message = f"replayed from attempt {entry.attempt} (flow run {entry.task_run_id})"
        extra = {"output": entry.output, "replay_of": entry.task_run_id,
                 "replayed_from": entry.attempt}  # fmt: skip
        state = Completed(message=message, data=value, name=REPLAYED)
        return self._set_state(state, summarize(value), extra)

    def _remember(self, output: dict[str, Any]) -> None:
        """A subflow that completed: its parent's retry (in this process) replays it."""
        parent, identity = self.parent, self.identity
        if parent is None or identity is None or parent.replay is None:
            return
        parent.replay.add(ReplayEntry(SUBFLOW + self.flow.name, identity["position"],
                                      identity["input_hash"], output, parent.attempt,
                                      self.flow_run.id, self.flow_run.name))  # fmt: skip

    async def _output(self, result: Any) -> dict[str, Any] | None:
        """The run's result as recorded with Completed: inline JSON always when it fits; a run
        that records results (deployed) stores any other result too."""
        output = inline_output(result)
        if output is not None or not self.context.record_results:
            return output
        key = f"{self.flow_run.id}/flow-run"
        try:
            return await asyncio.to_thread(stored_output, result, key)
        except Exception as exc:
            console(logging.WARNING, "flowbus.engine", f"flow run result not stored: {exc!r}")
            return None

    async def _settle(self, result: Any) -> Any:
        """Wait for every submitted task run; resolve futures and states the flow returned."""
        await self._settle_quietly()
        return await _resolve_returned(result)

    async def _settle_quietly(self) -> None:
        await wait_all(list(self.context.submitted))


async def _resolve_returned(value: Any) -> Any:
    if isinstance(value, TaskRunFuture):
        return (await value.wait_async()).result()
    if isinstance(value, State):
        return value  # a returned state is the run's final state
    if type(value) in (list, tuple) and any(isinstance(v, TaskRunFuture | State) for v in value):
        return type(value)([await _resolve_item(v) for v in value])
    return value


def _with_context_tags(tags: list[str]) -> list[str]:
    extra = tags_var.get()
    return list(dict.fromkeys([*tags, *extra])) if extra else list(tags)


async def _resolve_item(value: Any) -> Any:
    if isinstance(value, State):
        return value.result()
    return await _resolve_returned(value)
