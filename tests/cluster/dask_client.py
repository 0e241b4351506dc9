"""A flow run by hand on the client host whose tasks run on the Dask workers of other hosts.

``python dask_client.py SCHEDULER_ADDRESS WORKERS``: waits for WORKERS workers, runs
``dask_flows.fan_out`` with a ``DaskTaskRunner`` on that scheduler, and prints one JSON line:
the flow's result and the worker recorded on each task run's final state."""

from __future__ import annotations

import asyncio
import json
import sys

from distributed import Client

from flowbus.engine.documents import using_store
from flowbus.engine.store import EventStore
from flowbus.task_runners import DaskTaskRunner
from tests.integration import dask_flows


async def wait_for_workers(address: str, count: int) -> None:
    async with Client(address, asynchronous=True) as client:
        await client.wait_for_workers(count, timeout=120)


async def workers_recorded(store: EventStore) -> list[str]:
    [run] = await store.list_flow_runs()
    events = await store.read_stream(run.id)
    return [e.data["worker"] for e in events if e.type == "task_run.state" and e.data.get("worker")]


if __name__ == "__main__":
    address, count = sys.argv[1], int(sys.argv[2])
    asyncio.run(wait_for_workers(address, count))
    flow = dask_flows.fan_out.with_options(task_runner=DaskTaskRunner(address=address))
    result = flow(n=20)
    workers = asyncio.run(using_store(None, workers_recorded))
    print(json.dumps({"result": result, "workers": workers}))
