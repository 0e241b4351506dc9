"""Task runs on a real Dask cluster: a `dask scheduler` and two `dask worker` processes, as
separate processes on loopback. Every task run's states are in the store, with the worker
that ran it; the flow sees results, exceptions and tracebacks as if the tasks ran in it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowbus.engine.store import EventStore, store_from_url

from . import dask_flows
from .stack import Stack, wait_until

pytest.importorskip("distributed", reason="Dask is in the dev extras: pip install -e '.[dev]'")

from flowbus.task_runners import DaskTaskRunner

DASK = Path(sys.executable).parent / "dask"


class DaskCluster:
    """A scheduler and workers started as processes; ``close`` stops them by PID."""

    def __init__(self, root: Path, workers: int = 2) -> None:
        self.root = root
        self.processes: list[subprocess.Popen[bytes]] = []
        try:
            self._start_all(workers)
        except BaseException:
            self.close()
            raise

    def _start_all(self, workers: int) -> None:
        root = self.root
        scheduler_file = root / "scheduler.json"
        self._start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0",
                    "--no-dashboard", "--scheduler-file", str(scheduler_file))  # fmt: skip
        wait_until(scheduler_file.exists, timeout=60, what="the Dask scheduler")
        self.address: str = json.loads(scheduler_file.read_text())["address"]
        self.worker_addresses: list[str] = []
        for number in range(workers):
            self._start(f"worker-{number}", "worker", self.address, "--host", "127.0.0.1",
                        "--nthreads", "2", "--no-dashboard", "--nworkers", "1")  # fmt: skip
        self.worker_addresses = asyncio.run(self._wait_for_workers(workers))

    def _start(self, name: str, *args: str) -> None:
        log = (self.root / f"{name}.log").open("wb")
        env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
        self.processes.append(subprocess.Popen([str(DASK), *args], stdout=log,
                                               stderr=subprocess.STDOUT, env=env))  # fmt: skip

    async def _wait_for_workers(self, count: int) -> list[str]:
        from distributed import Client

        async with Client(self.address, asynchronous=True) as client:
            await client.wait_for_workers(count, timeout=120)
            return sorted(client.scheduler_info()["workers"])

    def close(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    cluster = DaskCluster(tmp_path_factory.mktemp("dask"))
    try:
        yield cluster
    finally:
        cluster.close()


def on(cluster: DaskCluster, flow: Any, **options: Any) -> Any:
    return flow.with_options(task_runner=DaskTaskRunner(address=cluster.address, **options))


def stored(action: Any) -> Any:
    async def main() -> Any:
        store: EventStore = store_from_url()
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(main())


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
    dask_cluster: DaskCluster, flowbus_home: Path
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
    dask_cluster: DaskCluster, flowbus_home: Path, tmp_path: Path
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
    dask_cluster: DaskCluster, flowbus_home: Path
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
    dask_cluster: DaskCluster, flowbus_home: Path
) -> None:
    from flowbus.engine.remote_calls import RemoteTaskError

    with pytest.raises(RemoteTaskError, match="Unpicklable: holds a lock"):
        on(dask_cluster, dask_flows.failures)("unpicklable")


def test_a_task_past_its_timeout_is_timed_out(
    dask_cluster: DaskCluster, flowbus_home: Path
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


def test_a_deployed_run_uses_its_agents_cluster(dask_cluster: DaskCluster, tmp_path: Path) -> None:
    stack = Stack(tmp_path, env={"FLOWBUS_DASK_ADDRESS": dask_cluster.address})
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
        workers = workers_of(stack.stream(run_id))
        assert len(workers) == 10
        assert {w.split(" ")[0] for w in workers.values()} <= set(dask_cluster.worker_addresses)
    finally:
        stack.close()
