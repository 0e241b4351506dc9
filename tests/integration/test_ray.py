"""Task runs on a local Ray (started for the flow run and shut down at its end): results,
futures, logs and prints from the workers, a task's exception and traceback, and the node that
ran each task run on its state."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_dask import stored, the_run, workers_of

pytest.importorskip("ray", reason="Ray is in the dev extras: pip install -e '.[dev]'")

from flowbus import flow, task
from flowbus.prefect_ray import RayTaskRunner, remote_options

from . import dask_flows


@task
def fails() -> None:
    raise KeyError("missing on a Ray worker")


@flow(task_runner=RayTaskRunner(init_kwargs={"num_cpus": 2}))
def on_ray(n: int = 8) -> dict[str, object]:
    doubled = dask_flows.double.map(range(n))
    with remote_options(num_cpus=1):
        total = dask_flows.add.submit(doubled[1], doubled[2])
    failed = fails.submit()
    failed.wait()
    return {
        "doubled": [f.result() for f in doubled],
        "total": total.result(),
        "chatty": dask_flows.chatty("ray"),
        "failed": failed.state.is_failed(),
    }


def test_tasks_on_a_local_ray(flowbus_home: Path) -> None:
    import ray

    assert on_ray() == {
        "doubled": [2 * i for i in range(8)],
        "total": 6,
        "chatty": "RAY",
        "failed": True,
    }
    assert not ray.is_initialized()  # the Ray it started is shut down with the flow run
    run, task_runs, events = the_run("on-ray")
    assert len(task_runs) == 11
    workers = workers_of(events)
    assert set(workers) == {t.id for t in task_runs}
    assert all(w.startswith("ray node ") for w in workers.values())
    messages = [line.message for line in stored(lambda store: store.get_logs(run.id))]
    assert "logged on a worker: ray" in messages and "printed on a worker: ray" in messages
    [failed] = [e for e in events if e.type == "task_run.state" and e.data["state"]["type"]
                == "FAILED"]  # fmt: skip
    assert "missing on a Ray worker" in failed.data["state"]["traceback"]
