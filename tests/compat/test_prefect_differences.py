"""Behaviours Prefect 3 documents that flowbus once did differently, each written from
Prefect's documentation and run with the import line changed."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flowbus import flow, runtime, task
from flowbus.cache_policies import INPUTS
from flowbus.exceptions import ParameterTypeError
from flowbus.states import Failed, State


def test_a_cached_task_called_outside_any_flow_runs_once(tmp_path: Path) -> None:
    calls: list[int] = []

    @task(cache_policy=INPUTS)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert square(4) == 16
    assert square(4) == 16  # from the cache
    assert square(5) == 25
    assert calls == [4, 5]


def test_a_task_returning_a_failed_state_hands_that_state_back() -> None:
    @task
    def check() -> State:
        return Failed(message="the data was late")

    @flow
    def pipeline() -> str:
        state = check()
        assert isinstance(state, State) and state.is_failed()
        return str(state.message)

    assert pipeline() == "the data was late"


def test_run_names_from_functions_and_templates_see_the_parameters() -> None:
    def task_name() -> str:
        return f"n-is-{runtime.task_run.parameters['n']}"

    def flow_name() -> str:
        return f"for-{runtime.flow_run.parameters['who']}"

    @task(task_run_name=task_name)
    def named(n: int) -> str:
        return str(runtime.task_run.name)

    @task(task_run_name="hello-{name}-on-{date:%A}")
    def greeted(name: str, date: datetime.datetime) -> str:
        return str(runtime.task_run.name)

    @task(task_run_name="part-{i}")
    def part(i: int) -> str:
        return str(runtime.task_run.name)

    @flow(flow_run_name=flow_name)
    def pipeline(who: str) -> list[str]:
        monday = datetime.datetime(2026, 12, 7)
        parts = [f.result() for f in part.map([1, 2])]
        return [str(runtime.flow_run.name), named(3), greeted("ada", monday), *parts]

    assert pipeline("ada") == ["for-ada", "n-is-3", "hello-ada-on-Monday", "part-1", "part-2"]


def test_invalid_parameters_raise_parameter_type_error() -> None:
    @flow
    def typed(n: int) -> int:
        return n

    with pytest.raises(ParameterTypeError) as caught:
        typed("not a number")  # type: ignore[arg-type]
    assert type(caught.value).__name__ == "ParameterTypeError"


def test_emit_event_with_no_server_returns_the_event_and_records_it_whole(
    flowbus_home: Path,
) -> None:
    import asyncio

    from flowbus.engine.store import store_from_url
    from flowbus.events import Event, emit_event

    first = emit_event("order.placed", {"prefect.resource.id": "order.1"})
    related = [{"prefect.resource.id": "customer.7", "prefect.resource.role": "customer"}]
    second = emit_event("order.shipped", {"prefect.resource.id": "order.1"}, related=related,
                        follows=first, payload={"carrier": "post"})  # fmt: skip
    assert isinstance(second, Event) and second.id and second.event == "order.shipped"
    assert second.resource == {"prefect.resource.id": "order.1"} and second.follows == first.id
    assert second.related == related

    async def recorded() -> list[dict[str, object]]:
        async with store_from_url() as store:
            events = await store.read_all()
        return [e.data for e in events if e.type == "custom.event"]

    stored = {e["event_type"]: e for e in asyncio.run(recorded())}
    assert stored["order.shipped"]["related"] == related
    assert stored["order.shipped"]["follows"] == first.id


def test_artifacts_outside_any_run_are_recorded_against_no_run(flowbus_home: Path) -> None:
    from flowbus.artifacts import (
        Artifact,
        create_progress_artifact,
        create_table_artifact,
        update_progress_artifact,
    )

    create_table_artifact([{"region": "eu", "sales": 3}], key="sales-table",
                          description="from a script")  # fmt: skip
    found = Artifact.get("sales-table")
    assert found is not None and found.type == "table" and found.flow_run_id is None
    assert found.data == [{"region": "eu", "sales": 3}] and found.description == "from a script"
    progress = create_progress_artifact(10.0, key="load-progress")
    update_progress_artifact(progress, 80.0)
    latest = Artifact.get("load-progress")
    assert latest is not None and latest.data == 80.0
    # `flowbus artifact ls` (Prefect's `prefect artifact ls`) and `inspect` find them too.
    listed = subprocess.run([sys.executable, "-m", "flowbus", "artifact", "ls", "--json"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    keys = {a["key"]: a for a in json.loads(listed)["artifacts"]}
    assert keys["sales-table"]["flow_run_id"] is None and keys["load-progress"]["data"] == 80.0
    shown = subprocess.run([sys.executable, "-m", "flowbus", "artifacts", "inspect", "sales-table"],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "made outside a run" in shown and "from a script" in shown


def test_a_committed_transaction_key_is_found_by_the_next_flow_run() -> None:
    from flowbus.transactions import transaction

    work: list[str] = []

    @flow
    def nightly(day: str) -> str:
        with transaction(key=f"nightly-load-{day}") as txn:
            if txn.is_committed():
                return "skipped"
            work.append(day)
            return "loaded"

    assert nightly("2026-12-07") == "loaded"
    assert nightly("2026-12-07") == "skipped"  # the next run finds the key committed
    assert nightly("2026-12-08") == "loaded"
    assert work == ["2026-12-07", "2026-12-08"]


def test_a_run_by_hand_pauses_until_resumed_from_another_thread() -> None:
    from pydantic import BaseModel

    from flowbus.flow_runs import pause_flow_run, resume_flow_run

    class Approval(BaseModel):
        approved: bool

    started: list[str] = []

    @flow
    def review() -> str:
        started.append(str(runtime.flow_run.id))
        note = pause_flow_run(timeout=60, poll_interval=1, wait_for_input=str)
        answer = pause_flow_run(timeout=60, wait_for_input=Approval)
        return f"{note}: {answer.approved}"

    def resume_when_paused() -> None:
        import time

        resumed: list[object] = []
        for inputs in ({"value": "looks fine"}, {"approved": True}):
            while not started or _pause_of(started[0]) in (None, *resumed):
                time.sleep(0.01)  # until this pause waits (not the one resumed before)
            resumed.append(_pause_of(started[0]))
            resume_flow_run(started[0], run_input=inputs)

    helper = threading.Thread(target=resume_when_paused, daemon=True)
    helper.start()
    assert review() == "looks fine: True"
    helper.join(30)


def _pause_of(run_id: str) -> object:
    from flowbus.engine.local_pause import _waiting

    return _waiting.get(run_id)
