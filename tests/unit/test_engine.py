"""The in-process engine: what users of @flow and @task rely on, checked through its events."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from flowbus import (
    ThreadPoolTaskRunner,
    UsageError,
    allow_failure,
    flow,
    get_run_logger,
    task,
    task_input_hash,
    unmapped,
)
from flowbus.engine.context import get_run_context
from flowbus.engine.errors import MissingContextError, UnfinishedRun
from flowbus.engine.states import StateType

from .engine_helpers import ConcurrencyProbe, capture


@task
def add(x: int, y: int = 0) -> int:
    return x + y


@task
async def async_add(x: int, y: int = 0) -> int:
    await asyncio.sleep(0)
    return x + y


def test_task_call_in_a_flow_returns_its_result_and_records_three_states() -> None:
    @flow
    def simple() -> int:
        return add(1, 2)

    result, rec = capture(simple)
    assert result == 3
    assert rec.task_states("add") == ["Pending", "Running", "Completed"]
    assert rec.flow_states() == ["Pending", "Running", "Completed"]


def test_a_task_outside_any_flow_just_runs() -> None:
    result, rec = capture(lambda: add(2, 3))
    assert result == 5
    assert rec.records == []


def test_async_flow_with_async_and_sync_tasks() -> None:
    @flow
    async def mixed() -> int:
        a = await async_add(1, 1)
        b = add(a, 1)
        futures = [async_add.submit(i) for i in range(5)]
        return b + sum([await f for f in futures])

    result, rec = capture(lambda: asyncio.run(mixed()))
    assert result == 3 + 10
    assert len(rec.task_runs()) == 7


def test_async_flows_and_tasks_return_coroutines() -> None:
    @flow
    async def top() -> int:
        return await async_add(20, 22)

    result, _ = capture(lambda: asyncio.run(top()))
    assert result == 42

    @flow
    def sync_flow_submits_async_task() -> int:
        return async_add.submit(1, 2).result()

    result, _ = capture(sync_flow_submits_async_task)
    assert result == 3


def test_submit_returns_futures_and_futures_as_arguments_become_dependencies() -> None:
    @flow
    def pipeline() -> int:
        a = add.submit(1)
        b = add.submit(a, 10)
        assert b.result() == 11
        assert b.state.is_completed()
        return b.result()

    result, rec = capture(pipeline)
    assert result == 11
    runs = {d["name"]: d for d in rec.task_runs()}
    assert runs["add-1"]["upstream"] == [runs["add-0"]["task_run_id"]]


def test_wait_for_adds_an_explicit_dependency_and_waits() -> None:
    order: list[str] = []

    @task
    def slow() -> None:
        time.sleep(0.05)
        order.append("slow")

    @task
    def after() -> None:
        order.append("after")

    @flow
    def ordered() -> None:
        first = slow.submit()
        after.submit(wait_for=[first]).wait()

    _, rec = capture(ordered)
    assert order == ["slow", "after"]
    runs = {d["name"]: d for d in rec.task_runs()}
    assert runs["after-0"]["upstream"] == [runs["slow-0"]["task_run_id"]]


def test_map_fans_out_with_unmapped_arguments() -> None:
    @flow
    def fan() -> list[int]:
        return add.map([1, 2, 3], y=unmapped(10)).result()

    result, rec = capture(fan)
    assert result == [11, 12, 13]
    assert sorted(d["map_index"] for d in rec.task_runs()) == [0, 1, 2]


def test_map_with_iterables_of_different_lengths_is_a_clear_error() -> None:
    @flow
    def bad() -> None:
        add.map([1, 2], [1])

    with pytest.raises(UsageError, match="different lengths"):
        capture(bad)


def test_return_state_gives_the_final_state_instead_of_raising() -> None:
    @task
    def broken() -> None:
        raise ValueError("nope")

    @flow
    def tolerant() -> str:
        state = broken(return_state=True)
        assert state.is_failed()
        assert "ValueError: nope" in state.message
        assert "Traceback" in state.traceback
        return state.name

    result, rec = capture(tolerant)
    assert result == "Failed"
    assert rec.flow_states() == ["Pending", "Running", "Completed"]


def test_a_failing_task_fails_the_flow_and_the_exception_reaches_the_caller() -> None:
    @task
    def broken() -> None:
        raise KeyError("missing")

    @flow
    def fails() -> None:
        broken()

    with pytest.raises(KeyError):
        capture(fails)
    _, rec = capture(lambda: fails(return_state=True))
    assert rec.flow_states()[-1] == "Failed"
    failed = next(d for d in rec.of_type("flow_run.state") if d["state"]["type"] == "FAILED")
    assert "KeyError" in failed["state"]["traceback"]


def test_downstream_of_a_failed_upstream_fails_without_running() -> None:
    ran: list[int] = []

    @task
    def broken() -> int:
        raise RuntimeError("x")

    @task
    def downstream(value: int) -> None:
        ran.append(value)

    @flow
    def chain_states() -> tuple[bool, bool]:
        a = broken.submit()
        b = downstream.submit(a)
        b.wait()
        with pytest.raises(UnfinishedRun):
            b.result()
        c = downstream.submit(allow_failure(a))
        return b.state.is_pending() and b.state.name == "NotReady", c.result() is None

    result, _ = capture(chain_states)
    assert result == (True, True)
    assert len(ran) == 1  # only the allow_failure call ran


def test_subflows_are_linked_to_their_parent() -> None:
    @flow
    def child(x: int) -> int:
        return add(x, 1)

    @flow
    def parent() -> int:
        return child(1) + child(2)

    result, rec = capture(parent)
    assert result == 5
    created = rec.of_type("flow_run.created")
    parent_id = next(d["stream_id"] for d in created if d["flow_name"] == "parent")
    children = [d for d in created if d["flow_name"] == "child"]
    assert len(children) == 2
    assert all(d["parent_run_id"] == parent_id for d in children)


def test_retries_honour_delays_and_are_recorded() -> None:
    calls: list[float] = []

    @task(retries=2, retry_delay_seconds=[0.05, 0.1])
    def flaky() -> int:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("try again")
        return len(calls)

    @flow
    def retrying() -> int:
        return flaky()

    result, rec = capture(retrying)
    assert result == 3
    assert calls[1] - calls[0] >= 0.05
    assert calls[2] - calls[1] >= 0.1
    assert rec.task_states("flaky") == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Retrying",
        "AwaitingRetry",
        "Retrying",
        "Completed",
    ]


def test_retry_condition_fn_can_stop_retries() -> None:
    attempts: list[int] = []

    def only_connection_errors(task, task_run, state) -> bool:
        return isinstance(state.data, ConnectionError)

    @task(retries=5, retry_condition_fn=only_connection_errors)
    def picky() -> None:
        attempts.append(1)
        raise ValueError("not worth retrying")

    @flow
    def run_picky() -> None:
        picky()

    with pytest.raises(ValueError):
        capture(run_picky)
    assert len(attempts) == 1


def test_a_timeout_ends_the_task_as_timed_out() -> None:
    # Were timeouts ignored, these would outlast the test's own time limit.
    @task(timeout_seconds=0.1)
    def sleepy() -> None:
        time.sleep(600)

    @task(timeout_seconds=0.1)
    async def async_sleepy() -> None:
        await asyncio.sleep(600)

    @flow
    def timed() -> tuple[str, str]:
        a = sleepy(return_state=True)
        b = async_sleepy.submit()
        b.wait()
        return a.name, b.state.name

    result, _ = capture(timed)
    assert result == ("TimedOut", "TimedOut")


def test_flow_timeout() -> None:
    @flow(timeout_seconds=0.1)
    def too_slow() -> None:
        time.sleep(600)

    state, _rec = capture(lambda: too_slow(return_state=True))
    assert state.name == "TimedOut"
    assert state.type is StateType.FAILED


def test_cache_hit_skips_execution_across_engine_instances(tmp_path: Path) -> None:
    executions: list[int] = []

    @task(
        cache_key_fn=task_input_hash, cache_expiration=timedelta(minutes=5), result_storage=tmp_path
    )
    def expensive(x: int) -> int:
        executions.append(x)
        return x * 2

    @flow
    def cached() -> list[int]:
        return [expensive(2), expensive(2), expensive(3)]

    result, rec = capture(cached)
    assert result == [4, 4, 6]
    assert executions == [2, 3]
    assert rec.task_states("expensive") == [
        "Pending",
        "Running",
        "Completed",
        "Pending",
        "Cached",
        "Pending",
        "Running",
        "Completed",
    ]
    keys = [d["cache_key"] for d in rec.task_runs()]
    assert keys[0] == keys[1] != keys[2]


def test_hooks_run_on_completion_and_failure() -> None:
    seen: list[tuple[str, str]] = []

    def remember(owner, run, state) -> None:
        seen.append((run.name.split("-")[0], state.name))

    @task(on_completion=[remember], on_failure=[remember])
    def maybe(fail: bool) -> None:
        if fail:
            raise ValueError("x")

    @flow(on_completion=[lambda f, r, s: seen.append(("flow", s.name))])
    def hooked() -> None:
        maybe(False)
        maybe(True, return_state=True)

    capture(hooked)
    assert seen == [("maybe", "Completed"), ("maybe", "Failed"), ("flow", "Completed")]


def test_run_logger_and_log_prints_become_log_events() -> None:
    @task(log_prints=True)
    def chatty() -> None:
        print("from a task")
        get_run_logger().warning("careful", rows=3)

    @flow(log_prints=True)
    def talking() -> None:
        print("from the flow")
        chatty()

    @flow
    def quiet() -> None:
        print("not captured")

    _, rec = capture(talking)
    assert rec.logs() == ["from the flow", "from a task", "careful rows=3"]
    levels = [d["level"] for d in rec.of_type("log")]
    assert levels == [20, 20, 30]
    task_log = rec.of_type("log")[1]
    assert task_log["task_run_id"] == rec.task_runs()[0]["task_run_id"]
    _, rec = capture(quiet)
    assert rec.logs() == []


def test_get_run_logger_outside_a_run_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        get_run_logger()


def test_run_name_templates() -> None:
    @task(task_run_name="add-{x}-to-{y}")
    def named(x: int, y: int) -> int:
        return x + y

    @flow(flow_run_name="daily-{day}")
    def naming(day: str) -> int:
        return named(1, 2)

    _, rec = capture(lambda: naming("monday"))
    assert rec.of_type("flow_run.created")[0]["name"] == "daily-monday"
    assert rec.task_runs()[0]["name"] == "add-1-to-2"


def test_thread_pool_task_runner_limits_concurrency() -> None:
    probe = ConcurrencyProbe(0.02)

    @task
    def busy(i: int) -> int:
        probe.busy()
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def limited() -> list[int]:
        return busy.map(range(12)).result()

    result, _ = capture(limited)
    assert result == list(range(12))
    assert probe.peak == 3


def test_default_runner_gives_blocking_sync_tasks_more_threads() -> None:
    probe = ConcurrencyProbe(0.05)

    @task
    def nap(i: int) -> None:
        probe.busy()

    @flow
    def parallel() -> None:
        nap.map(range(24)).wait()

    capture(parallel)
    assert probe.peak >= 3  # tasks that block are spread over the pool's threads


def test_flow_waits_for_submitted_tasks_before_completing() -> None:
    done: list[int] = []

    @task
    def later() -> None:
        time.sleep(0.05)
        done.append(1)

    @flow
    def fire_and_forget() -> None:
        later.submit()

    capture(fire_and_forget)
    assert done == [1]


def test_result_in_an_async_flow_explains_to_await() -> None:
    @flow
    async def wrong() -> None:
        future = async_add.submit(1)
        future.result()

    with pytest.raises(UsageError, match="await"):
        capture(lambda: asyncio.run(wrong()))


def test_run_context_is_visible_inside_tasks_and_gone_after() -> None:
    @task
    def who() -> str:
        context = get_run_context()
        return context.task_run.name

    @flow
    def outer() -> str:
        return who()

    result, _ = capture(outer)
    assert result == "who-0"
    with pytest.raises(MissingContextError):
        get_run_context()


def test_flow_retries() -> None:
    attempts: list[int] = []

    @flow(retries=1)
    def second_time_lucky() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first")
        return 7

    result, rec = capture(second_time_lucky)
    assert result == 7
    assert rec.flow_states() == ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]


def test_sync_and_async_subflows_inside_an_async_flow() -> None:
    @flow
    def sync_child(x: int) -> int:
        return add(x, 1)

    @flow
    async def async_child(x: int) -> int:
        return await async_add(x, 2)

    @flow
    async def parent() -> int:
        a = sync_child(1)  # blocks the loop while it runs, as any sync call would
        b = await async_child(1)
        return a + b

    result, rec = capture(lambda: asyncio.run(parent()))
    assert result == 2 + 3
    created = rec.of_type("flow_run.created")
    parent_id = next(d["stream_id"] for d in created if d["flow_name"] == "parent")
    assert {d["flow_name"] for d in created if d["parent_run_id"] == parent_id} == {
        "sync-child",
        "async-child",
    }


def test_retry_delay_in_a_sync_subflow_of_an_async_flow() -> None:
    calls: list[int] = []

    @task(retries=1, retry_delay_seconds=0.01)
    def flaky_once() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("once")
        return 1

    @flow
    def sync_child() -> int:
        return flaky_once()  # waits for its retry on a nested loop of this thread

    @flow
    async def parent() -> int:
        return sync_child()

    result, _ = capture(lambda: asyncio.run(parent()))
    assert result == 1
    assert len(calls) == 2


def test_run_logger_formats_positional_arguments_as_the_stdlib_does() -> None:
    @flow
    def percent_style() -> None:
        get_run_logger().info("downloaded %d rows (%s)", 150, "iris")

    _, rec = capture(percent_style)
    assert rec.logs() == ["downloaded 150 rows (iris)"]


def test_a_submitted_task_run_is_pending_from_its_submission() -> None:
    gate = threading.Event()

    @task
    def blocker() -> None:
        gate.wait(10)

    @task
    def queued(i: int) -> int:
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def one_worker() -> None:
        first = blocker.submit()
        second = queued.submit(1)  # waits for the only worker
        time.sleep(0.05)
        gate.set()
        first.wait()
        second.wait()

    _, rec = capture(one_worker)
    waited = [d for d in rec.records_data() if d["type"].startswith("task_run.")]
    queued_states = {
        d["state"]["name"]: d["state"]["timestamp"]
        for d in waited
        if d["task_run_id"]
        == next(r["task_run_id"] for r in rec.task_runs() if r["name"] == "queued-0")
    }
    pending = datetime.fromisoformat(queued_states["Pending"])
    running = datetime.fromisoformat(queued_states["Running"])
    assert (running - pending).total_seconds() >= 0.05  # the time it waited for the worker


def test_a_timed_out_flow_does_not_wait_for_its_submitted_tasks() -> None:
    gate = threading.Event()

    @task
    def stuck() -> None:
        gate.wait(30)

    @flow(timeout_seconds=0.2)
    def impatient() -> None:
        stuck.submit()
        time.sleep(30)

    try:
        state, _ = capture(lambda: impatient(return_state=True))
        assert state.name == "TimedOut"
        assert not gate.is_set()  # it returned while its task run was still stuck
    finally:
        gate.set()


def test_future_state_reports_a_crashed_engine() -> None:
    import concurrent.futures

    from flowbus.engine.context import TaskRun
    from flowbus.engine.futures import TaskRunFuture

    backing: concurrent.futures.Future = concurrent.futures.Future()
    backing.set_exception(KeyboardInterrupt())
    future = TaskRunFuture(TaskRun("id", "t-0", "m.t", "run", []), backing)
    assert future.state.is_crashed()
