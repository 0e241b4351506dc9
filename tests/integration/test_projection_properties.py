"""Property: any valid event log, appended in any batching, projects the same in SQLite as in the
memory twin, and a rebuild equals the live projection. This checks the folding of state changes
into same-batch rows, the merging of updates, and the hand-written SQL against plain Python."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowbus.engine.ids import new_id
from flowbus.engine.records import EventRecord
from flowbus.engine.states import (
    AwaitingRetry,
    Cached,
    Completed,
    Crashed,
    Failed,
    Pending,
    Retrying,
    Running,
    Scheduled,
    TimedOut,
)
from flowbus.engine.store import EventStore, MemoryEventStore, SqliteEventStore
from flowbus.engine.store.postgres import PostgresEventStore
from tests.integration.postgres import fresh_schema
from tests.integration.store_contract import RunBuilder

STATES = [Scheduled, Pending, Running, Retrying, AwaitingRetry, Completed, Cached, Failed,
          TimedOut, Crashed]  # fmt: skip

# One run's script: a list of steps, each ("flow", state index, result?), ("task", task index,
# state index, result?), ("newtask",) or ("log", task index or None).
step = st.one_of(
    st.tuples(st.just("flow"), st.integers(0, len(STATES) - 1), st.none() | st.text(max_size=5)),
    st.tuples(st.just("newtask")),
    st.tuples(
        st.just("task"),
        st.integers(0, 3),
        st.integers(0, len(STATES) - 1),
        st.none() | st.text(max_size=5),
    ),
    st.tuples(st.just("log"), st.none() | st.integers(0, 3)),
)
run_script = st.lists(step, max_size=25)


def events_of(script: list[tuple[Any, ...]]) -> list[EventRecord]:
    run = RunBuilder(parameters={"n": len(script)})
    events = [run.created()]
    tasks: list[str] = []
    for item in script:
        kind = item[0]
        if kind == "flow":
            events.append(run.state(STATES[item[1]](message="m"), result=item[2]))
        elif kind == "newtask":
            tasks.append(new_id())
            events.append(run.task_created(tasks[-1], f"t-{len(tasks)}"))
        elif kind == "task" and tasks:
            task_run_id = tasks[item[1] % len(tasks)]
            record = run.task_state(task_run_id, STATES[item[2]]())
            record.data["result"] = item[3]
            events.append(record)
        elif kind == "log":
            task_run_id = tasks[item[1] % len(tasks)] if tasks and item[1] is not None else None
            events.append(run.log(f"line {len(events)}", task_run_id))
    return events


def interleave(runs: list[list[EventRecord]], picks: list[int]) -> list[EventRecord]:
    """Merge the runs' events into one log, keeping each run's own order."""
    queues = [list(events) for events in runs]
    merged: list[EventRecord] = []
    position = 0
    while any(queues):
        live = [q for q in queues if q]
        choice = picks[position % len(picks)] if picks else 0
        merged.append(live[choice % len(live)].pop(0))
        position += 1
    return merged


def batches(log: list[EventRecord], cuts: list[int]) -> list[list[EventRecord]]:
    edges = sorted({c % (len(log) + 1) for c in cuts} | {0, len(log)})
    return [log[a:b] for a, b in itertools.pairwise(edges) if b > a]


async def snapshot(store: EventStore) -> dict[str, Any]:
    runs = await store.list_flow_runs(limit=10_000)
    return {
        "runs": [r.to_dict() for r in runs],
        "tasks": {r.id: [t.to_dict() for t in await store.list_task_runs(r.id)] for r in runs},
        "logs": {r.id: [line.to_dict() for line in await store.get_logs(r.id)] for r in runs},
    }


async def compare(log: list[EventRecord], cuts: list[int], other: EventStore) -> None:
    """Append ``log`` in the given batches to ``other`` and the twin; both must agree, and a
    rebuild of ``other`` must equal its live projection."""
    memory = MemoryEventStore()
    async with other, memory:
        for batch in batches(log, cuts):
            await other.append(batch)
            await memory.append(batch)
        live = await snapshot(other)
        assert live == await snapshot(memory)
        assert await other.verify_projections() == []
        await other.rebuild_projections()
        assert await snapshot(other) == live


async def compare_sqlite(log: list[EventRecord], cuts: list[int]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        await compare(log, cuts, SqliteEventStore(Path(folder) / "flowbus.db", synchronous="OFF"))


async def compare_postgres(log: list[EventRecord], cuts: list[int]) -> None:
    async with fresh_schema() as url:
        await compare(log, cuts, PostgresEventStore(url))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scripts=st.lists(run_script, min_size=1, max_size=4),
    picks=st.lists(st.integers(0, 7), max_size=50),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_sqlite_and_memory_project_every_log_alike(
    scripts: list[list[tuple[Any, ...]]], picks: list[int], cuts: list[int]
) -> None:
    log = interleave([events_of(script) for script in scripts], picks)
    asyncio.run(compare_sqlite(log, cuts))


@pytest.fixture(scope="module")
def postgres_reachable() -> None:
    async def probe() -> None:
        async with fresh_schema():
            pass

    asyncio.run(probe())  # skips (or, under CI, fails) when there is no server


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    scripts=st.lists(run_script, min_size=1, max_size=4),
    picks=st.lists(st.integers(0, 7), max_size=50),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_postgres_and_memory_project_every_log_alike(
    postgres_reachable: None,
    scripts: list[list[tuple[Any, ...]]],
    picks: list[int],
    cuts: list[int],
) -> None:
    log = interleave([events_of(script) for script in scripts], picks)
    asyncio.run(compare_postgres(log, cuts))
