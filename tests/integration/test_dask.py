"""Task runs on a real Dask cluster: a `dask scheduler` and two `dask worker` processes, as
separate processes on loopback. Every task run's states are in the store, with the worker
that ran it; the flow sees results, exceptions and tracebacks as if the tasks ran in it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowbus.engine.documents import using_store
from flowbus.engine.store import EventStore

from . import dask_flows
from .stack import Stack

pytest.importorskip("distributed", reason="Dask is in the dev extras: pip install -e '.[dev]'")

from flowbus.task_runners import DaskTaskRunner
from flowbus.testing.dask import DaskProcesses


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskProcesses]:
    with DaskProcesses(tmp_path_factory.mktemp("dask"), workers=2) as cluster:
        yield cluster


def on(cluster: DaskProcesses, flow: Any, **options: Any) -> Any:
    return flow.with_options(task_runner=DaskTaskRunner(address=cluster.address, **options))


def stored(action: Any) -> Any:
    """``action`` on the configured store, opened for the call."""
    return asyncio.run(using_store(None, action))


def the_run(flow_name: str) -> Any:
    async def read(store: EventStore) -> Any:
        [run] = [r for r in await store.list_flow_runs() if r.flow_name == flow_name]
        return run, await store.list_task_runs(run.id), await store.read_stream(run.id)

    return stored(read)


def workers_of(events: list[Any]) -> dict[str, str]:
    """The worker on each task run's final state."""
    return {
        e.data["task_run_id"]: e.data["worker"]
        for e in events
        if e.type == "task_run.state" and e.data.get("worker")
    }


def test_submit_map_unmapped_futures_and_wait_for(
    dask_cluster: DaskProcesses, flowbus_home: Path
) -> None:
    result = on(dask_cluster, dask_flows.fan_out)(n=10)
    assert result == {
        "doubled": [2 * i for i in range(10)],
        "total": 102,
        "offsets": [10, 11, 12],
        "after": 10,
        "squares": [0, 1, 4, 9],
    }
    run, task_runs, events = the_run("fan-out")
    assert run.state_name == "Completed"
    assert len(task_runs) == 19 and {t.state_name for t in task_runs} == {"Completed"}
    workers = workers_of(events)
    assert set(workers) == {t.id for t in task_runs}  # every task run says where it ran
    used = {worker.split(" ")[0] for worker in workers.values()}
    assert used <= set(dask_cluster.worker_addresses) and len(used) == 2


def test_logs_prints_and_retries_reach_the_run(
    dask_cluster: DaskProcesses, flowbus_home: Path, tmp_path: Path
) -> None:
    flow = on(dask_cluster, dask_flows.logs_and_retries)
    assert flow(str(tmp_path / "marker")) == {"chatty": "HELLO", "flaky": "second time lucky"}
    run, task_runs, _ = the_run("logs-and-retries")
    logs = stored(lambda store: store.get_logs(run.id))
    messages = [line.message for line in logs]
    assert "logged on a worker: hello" in messages
    assert "printed on a worker: hello" in messages
    chatty = next(t for t in task_runs if t.name.startswith("chatty"))
    assert {line.task_run_id for line in logs if "worker" in line.message} == {chatty.id}
    flaky = next(t for t in task_runs if t.name.startswith("flaky"))
    assert flaky.state_name == "Completed" and flaky.retries == 1


def test_exceptions_and_tracebacks_reach_the_flow(
    dask_cluster: DaskProcesses, flowbus_home: Path
) -> None:
    with pytest.raises(ValueError, match="bad value on a worker") as raised:
        on(dask_cluster, dask_flows.failures)("value")
    assert "on worker tcp://127.0.0.1" in str(raised.value.__cause__)
    _, [task_run], events = the_run("failures")
    assert task_run.state_name == "Failed"
    [failed] = [e for e in events if e.type == "task_run.state" and e.data["state"]["type"]
                == "FAILED"]  # fmt: skip
    assert "bad value on a worker" in failed.data["state"]["traceback"]
    assert (
        'in broken\n    raise ValueError("bad value on a worker")'
        in failed.data["state"]["traceback"]
    )  # the worker's own frames


def test_an_exception_that_does_not_pickle_still_fails_the_task(
    dask_cluster: DaskProcesses, flowbus_home: Path
) -> None:
    from flowbus.engine.remote_calls import RemoteTaskError

    with pytest.raises(RemoteTaskError, match="Unpicklable: holds a lock"):
        on(dask_cluster, dask_flows.failures)("unpicklable")


def test_a_task_past_its_timeout_is_timed_out(
    dask_cluster: DaskProcesses, flowbus_home: Path
) -> None:
    state = on(dask_cluster, dask_flows.times_out)(return_state=True)
    assert state.is_failed()
    _, [task_run], _ = the_run("times-out")
    assert task_run.state_name == "TimedOut"


def test_a_temporary_local_cluster_is_made_and_shut_down(flowbus_home: Path) -> None:
    import psutil

    def children() -> set[int]:
        """Child processes, but multiprocessing's resource tracker (it lives as long as this
        process, whoever started it)."""
        found = set()
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "resource_tracker" not in " ".join(child.cmdline()):
                    found.add(child.pid)
        return found

    before = children()
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1})
    assert dask_flows.fan_out.with_options(task_runner=runner)(n=4)["doubled"] == [0, 2, 4, 6]
    deadline = time.monotonic() + 30
    while children() - before:
        assert time.monotonic() < deadline, "the local cluster's workers were left running"
        time.sleep(0.2)


def test_a_deployed_run_uses_its_agents_cluster(
    dask_cluster: DaskProcesses, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every daemon under its own NATS credential (flowbus auth), the test a service.
    stack = Stack(tmp_path, env={"FLOWBUS_DASK_ADDRESS": dask_cluster.address}, roles=True)
    stack.share_results(monkeypatch)
    stack.service_env(monkeypatch)
    try:
        stack.start_orchestrator()
        assert stack.cli("limit", "set", "db", "1").returncode == 0
        here = Path(__file__).parent
        deployment = stack.deploy("on_the_agents_cluster", folder=here, file="dask_flows.py")
        stack.start_agent("agent-1")

        async def run() -> Any:
            async with stack.client() as client:
                submitted = await client.submit(deployment, {"n": 6})
                return submitted.run_id, await client.wait(submitted.run_id, timeout=120)

        run_id, final = asyncio.run(run())
        assert final.completed

        async def result() -> Any:
            async with stack.client() as client:
                return await client.result(run_id)

        outcome = asyncio.run(result())
        assert outcome["total"] == 30
        spans = sorted(outcome["spans"])
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end - 0.01  # one at a time, though four worker threads were free
        events = stack.stream(run_id)
        workers = workers_of(events)
        assert len(workers) == 10
        # Durable results, as for any deployed run: each task run's Completed holds its output.
        completed = [e for e in events if e.type == "task_run.state"
                     and e.data["state"]["type"] == "COMPLETED"]  # fmt: skip
        assert len(completed) == 10 and all(e.data.get("output") for e in completed)
        assert {w.split(" ")[0] for w in workers.values()} <= set(dask_cluster.worker_addresses)
    finally:
        stack.close()


def test_a_cached_result_is_not_computed_again_on_the_cluster(
    dask_cluster: DaskProcesses, flowbus_home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran.txt"
    assert on(dask_cluster, dask_flows.cached_twice)(str(marker)) == [9, 9]
    assert marker.read_text() == "ran\n"  # the second call was Cached, in the flow
    _, task_runs, _ = the_run("cached-twice")
    assert sorted(t.state_name for t in task_runs) == ["Cached", "Completed"]


def test_a_worker_killed_mid_map_loses_no_task_run(flowbus_home: Path, tmp_path: Path) -> None:
    """kill -9 of one of two workers while a map runs on both: Dask runs the lost worker's
    calls again on the other, and every task run completes once, recorded on the survivor."""
    import threading

    with DaskProcesses(tmp_path, workers=2, threads=2) as cluster:
        victim = cluster.processes[1]  # worker-0 (processes[0] is the scheduler)

        def kill_when_busy() -> None:
            time.sleep(1.0)  # the map is under way on both workers
            victim.kill()

        killer = threading.Thread(target=kill_when_busy)
        killer.start()
        result = on(cluster, dask_flows.slow_map)(n=16, seconds=0.5)
        killer.join()
        assert result == [2 * i for i in range(16)]
        _, task_runs, events = the_run("slow-map")
        assert len(task_runs) == 16 and {t.state_name for t in task_runs} == {"Completed"}
        assert all(t.run_count == 1 for t in task_runs)  # no task run retried: Dask re-ran it
        [survivor] = set(cluster.worker_addresses) - {_address_of_worker_0(cluster)}
        ran_on = {w.split(" ")[0] for w in workers_of(events).values()}
        assert survivor in ran_on and ran_on <= set(cluster.worker_addresses)


def _address_of_worker_0(cluster: DaskProcesses) -> str:
    """The address worker-0 announced in its log."""
    for line in (cluster.root / "worker-0.log").read_text().splitlines():
        if "Start worker at:" in line:
            return line.split("Start worker at:")[1].strip()
    raise AssertionError("worker-0 did not say where it listens")
