"""A flow's tasks on Dask workers of other hosts: a scheduler on one network-namespace host,
a worker on each of two others, the flow run by hand on a fourth. The flow's file is on no
worker's path (it travels by value); each task run records the worker, on its own host, that
ran it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from .cluster import HERE, REPO, Cluster

pytest.importorskip("distributed", reason="Dask is in the dev extras: pip install -e '.[dev]'")

DASK = str(Path(sys.executable).parent / "dask")


def test_tasks_run_on_the_workers_of_other_hosts(cluster: Cluster, tmp_path: Path) -> None:
    scheduler_host, worker_hosts = cluster.hosts["h1"], [cluster.hosts["h2"], cluster.hosts["h3"]]
    address = f"tcp://{scheduler_host.address}:8786"
    env = {**cluster.env, "PYTHONPATH": str(REPO), "FLOWBUS_HOME": str(tmp_path / "client")}
    env.pop("FLOWBUS_STORE_URL")  # the flow records to the client's own SQLite store
    scheduler_host.start("dask-scheduler", [DASK, "scheduler", "--host", scheduler_host.address,
                                            "--port", "8786", "--no-dashboard"], env)  # fmt: skip
    for host in worker_hosts:
        host.start("dask-worker", [DASK, "worker", address, "--host", host.address,
                                   "--nthreads", "2", "--no-dashboard"], env)  # fmt: skip
    argv = [sys.executable, str(HERE / "dask_client.py"), address, "2"]
    output = cluster.hosts["client"].run(argv, env, timeout=300)
    report = json.loads(output.strip().splitlines()[-1])
    assert report["result"]["doubled"] == [2 * i for i in range(20)]
    hosts = {worker.split(" ")[0].removeprefix("tcp://").split(":")[0]
             for worker in report["workers"]}  # fmt: skip
    assert len(report["workers"]) == 29  # every task run of the flow
    assert hosts == {host.address for host in worker_hosts}
