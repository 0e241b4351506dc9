"""The life of one task run, written once as a coroutine.

Pending -> Running -> Completed | Failed | TimedOut, with AwaitingRetry -> Retrying in between,
or Pending -> Cached on a cache hit; every transition is checked by the rule table and recorded
as an event of the flow run's stream.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowbus.engine.caching import CacheStore, stable_hash
from flowbus.engine.concurrency import current_slots
from flowbus.engine.context import FlowRunContext, TaskRun, TaskRunContext, task_run_var
from flowbus.engine.errors import FlowbusError, TaskRunTimeout, TransitionRejected
from flowbus.engine.event_types import EventType
from flowbus.engine.inputs import resolve_inputs
from flowbus.engine.invoke import call_user_function
from flowbus.engine.records import state_dict, summarize
from flowbus.engine.replay import REPLAYED, ReplayEntry
from flowbus.engine.results import ResultMissing, decode_output, inline_output, stored_output
from flowbus.engine.retries import next_delay
from flowbus.engine.run_endings import failure_details, returned_state, run_hooks
from flowbus.engine.run_logging import console, record_log
from flowbus.engine.states import (
    AwaitingRetry,
    Cached,
    Cancelled,
    Completed,
    Crashed,
    Failed,
    Pending,
    Retrying,
    Running,
    State,
    TimedOut,
)
from flowbus.engine.transactions import Transaction, get_transaction
from flowbus.engine.transitions import decide

if TYPE_CHECKING:
    from flowbus.engine.tasks import Task


class UpstreamTaskError(FlowbusError):
    """A task did not run because a task it depends on did not complete."""


class TaskRunEngine:
    """Drives one task run; ``run()`` returns its final state and never raises for user errors."""

    __slots__ = (
        "args",
        "cache_key",
        "flow_ctx",
        "input_hash",
        "kwargs",
        "parameters",
        "returned_a_state",
        "task",
        "task_run",
        "upstream",
        "wait_for",
        "worker",
    )

    def __init__(
        self,
        task: Task[..., Any],
        task_run: TaskRun,
        flow_ctx: FlowRunContext,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wait_for: list[Any] | None,
    ) -> None:
        self.task = task
        self.task_run = task_run
        self.flow_ctx = flow_ctx
        self.args = args
        self.kwargs = kwargs
        self.wait_for = wait_for
        self.parameters: dict[str, Any] | None = None
        self.cache_key: str | None = None
        self.upstream: list[str] = []
        self.input_hash: str | None = None
        #: Where a remote runner ran the last call (recorded on the state that follows it).
        self.worker: str | None = None
        #: Whether the task's function returned a State (the run ends in it; a direct call
        #: of the task hands a failed one back instead of raising, as Prefect does).
        self.returned_a_state = False

    # -- events -------------------------------------------------------------------------------

    def _set_state(
        self, state: State, result: str | None = None, extra: dict[str, Any] | None = None
    ) -> State:
        current = self.task_run.state
        verdict = decide(current.type if current else None, state.type)
        if not verdict:
            raise TransitionRejected(f"task run {self.task_run.name!r}: {verdict.reason}")
        self.task_run.state = state
        fields: dict[str, Any] = {"task_run_id": self.task_run.id, "state": state_dict(state)}
        if current is None:
            task = self.task
            fields.update(
                task_key=task.task_key,
                name=self.task_run.name,
                tags=self.task_run.tags,
                map_index=self.task_run.map_index,
                cache_key=self.cache_key,
                upstream=self.upstream,
            )
            if self.flow_ctx.record_results:
                fields.update(position=self.task_run.position, input_hash=self.input_hash)
            self.flow_ctx.stream.emit(EventType.TASK_RUN_CREATED, fields, state.timestamp_iso)
        else:
            fields["result"] = result
            if extra:
                fields.update(extra)
            if self.worker is not None:
                fields["worker"], self.worker = self.worker, None
            self.flow_ctx.stream.emit(EventType.TASK_RUN_STATE, fields, state.timestamp_iso)
        return state

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> State:
        args, kwargs, resolution = await resolve_inputs(self.args, self.kwargs, self.wait_for)
        self.upstream = resolution.upstream
        task = self.task
        recording = self.flow_ctx.record_results
        if task.caching or task.task_run_name is not None or recording:
            self.parameters = task.parameters.bind(args, kwargs)
        if recording:
            self.input_hash = stable_hash(task.task_key, self.parameters)
        cache_key = self._compute_cache_key() if task.caching else None
        self.cache_key = cache_key
        if task.task_run_name is not None:
            # A name function may read ``runtime.task_run.parameters`` (Prefect's docs do).
            context = TaskRunContext(task, self.task_run, self.flow_ctx, self.parameters or {},
                                     False)  # fmt: skip
            token = task_run_var.set(context)
            try:
                self.task_run.name = task.render_run_name(self.parameters or {})
            finally:
                task_run_var.reset(token)

        if resolution.failures:
            # As in Prefect 3: the task does not run and stays Pending, named NotReady.
            names = ", ".join(f.task_run_name for f in resolution.failures)
            message = f"Upstream task run(s) did not reach a 'COMPLETED' state: {names}"
            return self._set_state(
                Pending(message=message, name="NotReady", timestamp=self.task_run.created)
            )
        self._set_state(Pending(timestamp=self.task_run.created))
        if self.flow_ctx.replay is not None:  # not awaited at all in a run that records nothing
            replayed = await self._replay()
            if replayed is not None:
                return replayed
        if cache_key is not None and not task.refresh_cache:
            hit = self._results().read(cache_key)
            if hit is not None:
                return await self._finish(Cached(data=hit.value), hit.value)
        parent = get_transaction()
        if parent is None and not (task.on_commit_hooks or task.on_rollback_hooks):
            return await self._attempts(args, kwargs, cache_key, None)
        # In a transaction (or with its hooks): the result is staged, and written and the
        # commit hooks called when the transaction commits.
        txn = Transaction(cache_key, self._results(), expiration=task.cache_expiration,
                          overwrite=True)  # fmt: skip
        try:
            with txn:
                state = await self._attempts(args, kwargs, cache_key, txn)
                if not state.is_completed():
                    raise _RollBack(state)
        except _RollBack as rolled_back:
            return rolled_back.state
        return state

    async def _replay(self) -> State | None:
        """Completed with the result an earlier attempt recorded for this call, if it has one
        that can be read (else None: the task runs)."""
        table = self.flow_ctx.replay
        task = self.task
        if table is None or not task.replay or task.refresh_cache or get_transaction():
            return None
        entry = table.match(task.task_key, self.task_run.position, self.input_hash)
        if entry is None:
            return None
        try:
            if "ref" in entry.output:
                value = await asyncio.to_thread(decode_output, entry.output)
            else:
                value = decode_output(entry.output)
        except ResultMissing as exc:
            record_log(logging.WARNING, "flowbus.engine", f"{exc}; running the task again")
            return None
        message = f"replayed from attempt {entry.attempt} (task run {entry.task_run_id})"
        state = Completed(message=message, data=value, name=REPLAYED)
        extra = {"output": entry.output, "replay_of": entry.task_run_id,
                 "replayed_from": entry.attempt}  # fmt: skip
        return self._set_state(state, summarize(value), extra)

    async def _output(self, result: Any) -> dict[str, Any] | None:
        """The ``output`` to record with a Completed state (in a run that records results)."""
        output = inline_output(result)
        if output is None:  # large or not JSON: to result storage, off the event loop
            key = f"{self.flow_ctx.flow_run.id}/{self.task_run.id}"
            try:
                output = await asyncio.to_thread(stored_output, result, key)
            except Exception as exc:  # unpicklable, storage unreachable, disk full
                why = f"result of {self.task_run.name} not recorded ({exc!r}): it runs again " \
                      "if the flow run executes again"  # fmt: skip
                record_log(logging.WARNING, "flowbus.engine", why)
        return output

    def _results(self) -> CacheStore:
        storage = self.task.cache_policy.key_storage
        return CacheStore(Path(storage).expanduser() if storage else self.task.result_path)

    async def _attempts(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: str | None,
        txn: Transaction | None,
    ) -> State:
        task_run = self.task_run
        # Tags may be limited: each attempt holds a slot of each (none while it waits to retry).
        slots = current_slots() if task_run.tags else None
        flow_run_id = self.flow_ctx.flow_run.id
        for attempt in range(self.task.retries + 1):
            task_run.run_count = attempt + 1
            release = (
                await slots.acquire(task_run.tags, task_run.id, flow_run_id) if slots else None
            )
            try:
                state, retry = await self._attempt(attempt, args, kwargs, key, txn)
            finally:
                if release is not None:
                    await release()
            if not retry:
                return state
            await self._wait_before_retry(attempt + 1, state)
        raise AssertionError("unreachable: the last attempt always returns")

    async def _attempt(
        self,
        attempt: int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: str | None,
        txn: Transaction | None,
    ) -> tuple[State, bool]:
        """One attempt: its state, and whether it failed and is to be retried."""
        task = self.task
        task_run = self.task_run
        running = self._set_state(Retrying() if attempt else Running())
        if task.on_running_hooks:
            await run_hooks(task.on_running_hooks, task, task_run, running)
        context = TaskRunContext(task, task_run, self.flow_ctx, self.parameters or {},
                                 self._log_prints(), (args, kwargs))  # fmt: skip
        token = task_run_var.set(context)
        try:
            if self.flow_ctx.task_runner.remote:
                result = await self._call_remotely(args, kwargs)
            else:
                result = await call_user_function(
                    task.fn, task.is_async, args, kwargs, task.timeout_seconds
                )
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit) as exc:
            self._set_state(Crashed(message=f"interrupted: {type(exc).__name__}"))
            raise
        except Exception as exc:
            failed = self._failed_state(exc)
            if attempt < task.retries and await self._should_retry(failed):
                return failed, True
            return await self._finish(failed, None), False
        finally:
            task_run_var.reset(token)
        if isinstance(result, State):  # the task returned a state: it ends in that state
            self.returned_a_state = True
            final = returned_state(result)
            return await self._finish(final, final.data), False
        if txn is not None:
            txn.stage(result, task.on_rollback_hooks, task.on_commit_hooks)
        elif key is not None or task.persist_result:
            self._results().write(key or f"task-run-{task_run.id}", result, task.cache_expiration)
        return await self._finish(Completed(data=result), result), False

    async def _call_remotely(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The task's function called by a remote runner (``engine/remote_calls.py``): what it
        logged there is recorded here, and its exception raised here."""
        from flowbus.engine.remote_calls import RemoteCall, localized_traceback, raise_outcome

        task, flow_ctx = self.task, self.flow_ctx
        call = RemoteCall(
            task.fn, task.is_async, tuple(args), dict(kwargs), flow_ctx.flow_run,
            self.task_run, task, self.parameters or {}, self._log_prints(),
        )  # fmt: skip
        outcome = await flow_ctx.task_runner.call(call, task.timeout_seconds)
        for type_, fields, occurred in outcome.events:
            flow_ctx.stream.emit(type_, fields, occurred)
        self.worker = outcome.worker
        if outcome.traceback is not None:
            outcome.traceback = localized_traceback(outcome.traceback, task.fn)
        return raise_outcome(outcome)

    def _failed_state(self, exc: BaseException) -> State:
        message, tb = failure_details(exc)
        make = TimedOut if isinstance(exc, TaskRunTimeout) else Failed
        return make(message=message, data=exc, traceback=tb)

    async def _should_retry(self, failed: State) -> bool:
        condition = self.task.retry_condition_fn
        if condition is None:
            return True
        try:
            verdict = condition(self.task, self.task_run, failed)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            return bool(verdict)
        except Exception as exc:
            record_log(logging.ERROR, "flowbus.engine", f"retry_condition_fn raised {exc!r}")
            return False

    async def _wait_before_retry(self, retry_number: int, failed: State) -> None:
        task = self.task
        delay = next_delay(retry_number, task.retry_delays, task.retry_jitter_factor)
        self._emit_failure_log(failed, retry_number, delay)
        self._set_state(AwaitingRetry(message=failed.message, traceback=failed.traceback))
        try:
            # A sleep the run's cancel ends at once (the flow's thread may be blocked in it).
            await self.flow_ctx.interrupt.sleep(max(delay, 0.0))
        except asyncio.CancelledError:
            self._set_state(Cancelled(message="the flow run was interrupted during a retry delay"))
            raise

    def _emit_failure_log(self, failed: State, retry: int, delay: float) -> None:
        record_log(
            logging.ERROR,
            "flowbus.engine",
            f"Task run failed with {failed.message}; retry {retry}/{self.task.retries} "
            f"in {delay:.3g} s",
        )

    async def _finish(self, state: State, result: Any) -> State:
        if state.is_failed():
            detail = f"\n{state.traceback}" if state.traceback else ""
            record_log(logging.ERROR, "flowbus.engine", f"Finished in state {state!r}{detail}")
        if state.is_completed():
            output = await self._output(result) if self.flow_ctx.record_results else None
            if output is not None:
                table = self.flow_ctx.replay
                if table is not None:  # a retry of the flow body replays it too
                    table.add(self._entry(output))
            self._set_state(state, summarize(result), {"output": output} if output else None)
        else:
            self._set_state(state)
        hooks = (
            self.task.on_completion_hooks if state.is_completed() else self.task.on_failure_hooks
        )
        if hooks:
            await run_hooks(hooks, self.task, self.task_run, state)
        return state

    def _entry(self, output: dict[str, Any]) -> ReplayEntry:
        task_run = self.task_run
        return ReplayEntry(self.task.task_key, task_run.position, self.input_hash, output,
                           self.flow_ctx.attempt, task_run.id, task_run.name)  # fmt: skip

    def _log_prints(self) -> bool:
        own = self.task.log_prints
        return self.flow_ctx.log_prints if own is None else own

    def _compute_cache_key(self) -> str | None:
        context = TaskRunContext(
            self.task, self.task_run, self.flow_ctx, self.parameters or {}, False
        )
        try:
            key = self.task.cache_policy.compute_key(
                context, self.parameters or {}, self.flow_ctx.flow_run.parameters
            )
        except Exception as exc:
            console(logging.WARNING, "flowbus.engine", f"cache key raised {exc!r}: not caching")
            return None
        if key is None:
            why = f"task {self.task.name!r}: its inputs cannot be hashed; not caching"
            console(logging.WARNING, "flowbus.engine", why)
        return key


class _RollBack(Exception):
    """Leaves a task run's own transaction so that it rolls back (the run did not complete)."""

    def __init__(self, state: State) -> None:
        self.state = state
