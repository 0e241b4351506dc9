"""The contract every event store backend passes; each backend's test module runs it.

A backend test module defines a ``store`` fixture yielding an opened, empty store and imports
``StoreContract``; the PostgreSQL backend reuses these tests unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowbus.engine.errors import SequenceError
from flowbus.engine.ids import new_id
from flowbus.engine.records import EventRecord, make_record, state_dict
from flowbus.engine.states import Completed, Failed, Pending, Running, State
from flowbus.engine.store import EventStore

ENVELOPE = ("schema_version", "id", "stream_id", "seq", "occurred", "type")


class RunBuilder:
    """Builds one flow run's events in order, as the engine would."""

    def __init__(self, flow_name: str = "etl", parameters: dict[str, Any] | None = None) -> None:
        self.run_id = new_id()
        self.seq = 0
        self.flow_name = flow_name
        self.parameters = parameters or {}

    def _next(self, kind: str, fields: dict[str, Any]) -> EventRecord:
        self.seq += 1
        return make_record(self.run_id, self.seq, kind, fields)

    def created(self, parent: str | None = None) -> EventRecord:
        return self._next(
            "flow_run.created",
            {
                "flow_name": self.flow_name,
                "name": f"run-{self.run_id[-4:]}",
                "flow_version": None,
                "parameters": self.parameters,
                "tags": ["nightly"],
                "parent_run_id": parent,
                "parent_task_run_id": None,
                "deployment": None,
                "state": state_dict(Pending()),
            },
        )

    def state(self, state: State, result: str | None = None) -> EventRecord:
        return self._next("flow_run.state", {"state": state_dict(state), "result": result})

    def task_created(self, task_run_id: str, name: str = "extract-0") -> EventRecord:
        return self._next(
            "task_run.created",
            {
                "task_run_id": task_run_id,
                "task_key": "m.extract",
                "name": name,
                "tags": [],
                "map_index": None,
                "cache_key": None,
                "upstream": [],
                "state": state_dict(Pending()),
            },
        )

    def task_state(self, task_run_id: str, state: State) -> EventRecord:
        return self._next(
            "task_run.state",
            {"task_run_id": task_run_id, "state": state_dict(state), "result": None},
        )

    def log(self, message: str, task_run_id: str | None = None) -> EventRecord:
        return self._next(
            "log",
            {"task_run_id": task_run_id, "level": 20, "logger": "test", "message": message},
        )

    def complete_run(self, tasks: int = 1, retries: int = 0) -> list[EventRecord]:
        """A whole run: created, running, ``tasks`` task runs (with retries), completed."""
        events = [self.created(), self.state(Running())]
        for index in range(tasks):
            task_run_id = new_id()
            events.append(self.task_created(task_run_id, f"extract-{index}"))
            for _ in range(retries):
                events.append(self.task_state(task_run_id, Running()))
                events.append(self.task_state(task_run_id, Failed(message="boom")))
            events.append(self.task_state(task_run_id, Running()))
            events.append(self.task_state(task_run_id, Completed()))
            events.append(self.log(f"task {index} done", task_run_id))
        events.append(self.state(Completed(), result="42"))
        return events


def deployment_saved(
    stream_id: str, seq: int, name: str = "etl-flow/daily", queue: str = "default"
) -> EventRecord:
    flow_name, deployment_name = name.split("/")
    return make_record(
        stream_id,
        seq,
        "deployment.saved",
        {
            "name": name,
            "flow_name": flow_name,
            "deployment_name": deployment_name,
            "entrypoint": "examples/etl_pipeline.py:etl_flow",
            "working_dir": "/srv/flows",
            "queue": queue,
            "parameters": {"filename": "out.csv"},
            "parameter_schema": {"type": "object", "properties": {"url": {"type": "string"}}},
            "tags": ["etl"],
            "description": None,
        },
    )


async def started_elsewhere(first: EventStore, second: EventStore) -> None:
    """Two stores on one database (two processes): a run ``first`` started is not new to
    ``second``, which takes a stream's first event as new without asking: the same event again
    is a no-op, another at its place is refused, and the next one is appended."""
    run = RunBuilder()
    created = run.created()
    assert await first.append([created]) == 1
    assert await second.append([created]) == 0
    run.seq = 0
    with pytest.raises(SequenceError):
        await second.append([run.created()])
    assert await second.append([created, run.state(Running())]) == 1
    assert (await first.read_stream(run.run_id))[0].id == created.id
    assert await first.verify_projections() == []


async def verified_while_written(first: EventStore, second: EventStore) -> None:
    """Two stores on one database: ``first`` verifies its projections while ``second`` (an
    orchestrator at work) appends run after run. Each verify compares one snapshot of the log
    with the same snapshot of the projections: nothing written meanwhile shows as a
    difference."""
    await first.append(RunBuilder().complete_run())
    stop = asyncio.Event()
    written = 0

    async def write() -> None:
        nonlocal written
        while not stop.is_set():
            run = RunBuilder()
            await second.append([run.created()])
            await second.append([run.state(Running()), run.state(Completed(), "1")])
            written += 1

    writer = asyncio.ensure_future(write())
    try:
        for _ in range(8):
            assert await first.verify_projections() == []
            await asyncio.sleep(0)
    finally:
        stop.set()
        await writer
    assert written > 0
    assert await first.verify_projections() == []


class StoreContract:
    """Behaviour every ``EventStore`` must have."""

    async def test_append_then_read_a_run_in_order(self, store: EventStore) -> None:
        run = RunBuilder()
        events = run.complete_run(tasks=2)
        assert await store.append(events) == len(events)
        stored = await store.read_stream(run.run_id)
        assert [e.seq for e in stored] == list(range(1, len(events) + 1))
        assert [e.id for e in stored] == [e.id for e in events]
        assert stored[0].data["flow_name"] == "etl"
        assert await store.head(run.run_id) == len(events)

    async def test_the_heads_of_many_streams_in_one_read(self, store: EventStore) -> None:
        runs = [RunBuilder() for _ in range(3)]
        await store.append([runs[0].created(), runs[0].state(Running()), runs[1].created()])
        ids = [run.run_id for run in runs]
        assert await store.heads(ids) == {ids[0]: 2, ids[1]: 1, ids[2]: 0}
        assert await store.heads([]) == {}
        many = [f"stream-{n}" for n in range(1200)]  # more than one read's worth of names
        assert set((await store.heads([*many, ids[0]])).values()) == {0, 2}

    async def test_global_positions_increase_across_runs(self, store: EventStore) -> None:
        a, b = RunBuilder(), RunBuilder()
        await store.append([a.created(), b.created(), a.state(Running())])
        everything = await store.read_all()
        positions = [e.position for e in everything]
        assert positions == sorted(positions) and len(set(positions)) == 3
        assert [e.stream_id for e in everything] == [a.run_id, b.run_id, a.run_id]
        assert [e.stream_id for e in await store.read_all(after_position=positions[0])] == [
            b.run_id,
            a.run_id,
        ]

    async def test_appending_the_same_event_twice_is_a_no_op(self, store: EventStore) -> None:
        run = RunBuilder()
        first = run.created()
        assert await store.append([first]) == 1
        assert await store.append([first]) == 0
        assert await store.append([first, first, run.state(Running())]) == 1
        assert len(await store.read_stream(run.run_id)) == 2

    async def test_a_sequence_gap_is_rejected_and_nothing_is_written(
        self, store: EventStore
    ) -> None:
        run, other = RunBuilder(), RunBuilder()
        created = run.created()
        run.seq += 1  # skip one
        with pytest.raises(SequenceError) as caught:
            await store.append([other.created(), created, run.state(Running())])
        assert caught.value.expected == 2 and caught.value.got == 3
        assert await store.read_stream(other.run_id) == []
        assert await store.read_stream(run.run_id) == []

    async def test_a_duplicate_sequence_with_another_id_is_rejected(
        self, store: EventStore
    ) -> None:
        run = RunBuilder()
        await store.append([run.created()])
        run.seq = 0
        with pytest.raises(SequenceError):
            await store.append([run.created()])

    async def test_a_run_must_start_at_one(self, store: EventStore) -> None:
        run = RunBuilder()
        run.seq = 4
        with pytest.raises(SequenceError):
            await store.append([run.state(Running())])

    async def test_flow_run_projection(self, store: EventStore) -> None:
        run = RunBuilder(parameters={"url": "http://x", "n": 3})
        await store.append(run.complete_run(tasks=1))
        view = await store.get_flow_run(run.run_id)
        assert view is not None
        assert view.flow_name == "etl"
        assert view.parameters == {"url": "http://x", "n": 3}
        assert view.tags == ["nightly"]
        assert (view.state_type, view.state_name) == ("COMPLETED", "Completed")
        assert view.started is not None and view.ended is not None
        assert view.created <= view.started <= view.ended
        assert view.run_count == 1
        assert view.result == "42"

    async def test_projection_follows_appends_across_batches(self, store: EventStore) -> None:
        run = RunBuilder()
        await store.append([run.created()])
        assert (await store.get_flow_run(run.run_id)).state_name == "Pending"
        await store.append([run.state(Running())])
        view = await store.get_flow_run(run.run_id)
        assert view.state_name == "Running" and view.ended is None
        await store.append([run.state(Failed(message="bad"))])
        view = await store.get_flow_run(run.run_id)
        assert (view.state_type, view.state_message) == ("FAILED", "bad")
        assert view.ended is not None

    async def test_task_run_projection_counts_runs(self, store: EventStore) -> None:
        run = RunBuilder()
        events = run.complete_run(tasks=1, retries=2)
        # Split across batches so both the folded and the SQL update paths are exercised.
        await store.append(events[:4])
        await store.append(events[4:])
        [task_run] = await store.list_task_runs(run.run_id)
        assert task_run.run_count == 3
        assert task_run.retries == 2
        assert task_run.state_name == "Completed"
        assert task_run.started <= task_run.ended

    async def test_list_flow_runs_filters_and_orders(self, store: EventStore) -> None:
        done, failed, other = RunBuilder(), RunBuilder(), RunBuilder("report")
        await store.append(done.complete_run())
        await store.append([failed.created(), failed.state(Running()), failed.state(Failed())])
        await store.append([other.created()])
        newest_first = [r.id for r in await store.list_flow_runs()]
        assert newest_first == [other.run_id, failed.run_id, done.run_id]
        assert [r.id for r in await store.list_flow_runs(state="FAILED")] == [failed.run_id]
        assert [r.id for r in await store.list_flow_runs(state="Pending")] == [other.run_id]
        assert {r.id for r in await store.list_flow_runs(flow_name="etl")} == {
            done.run_id,
            failed.run_id,
        }
        assert len(await store.list_flow_runs(limit=1)) == 1

    async def test_runs_filtered_by_deployment_tag_and_time_and_paged_by_cursor(
        self, store: EventStore
    ) -> None:
        runs = [RunBuilder() for _ in range(5)]
        for index, run in enumerate(runs):
            created = run.created()
            created.data["deployment"] = "etl/daily" if index % 2 else None
            created.data["tags"] = ["nightly", "team-a"] if index < 2 else ["adhoc"]
            await store.append([created])
        everything = await store.list_flow_runs()
        assert [r.id for r in everything] == [r.run_id for r in reversed(runs)]

        daily = await store.list_flow_runs(deployment="etl/daily")
        assert [r.id for r in daily] == [runs[3].run_id, runs[1].run_id]
        tagged = await store.list_flow_runs(tag="team-a")
        assert [r.id for r in tagged] == [runs[1].run_id, runs[0].run_id]
        assert await store.list_flow_runs(tag="team") == []  # a whole tag, not a part of one

        middle = everything[2].created
        assert [r.id for r in await store.list_flow_runs(created_after=middle)] == [
            r.id for r in everything[:3]
        ]
        assert [r.id for r in await store.list_flow_runs(created_before=middle)] == [
            r.id for r in everything[3:]
        ]

        pages, cursor = [], None
        while True:
            page = await store.list_flow_runs(limit=2, cursor=cursor)
            if not page:
                break
            pages.append([r.id for r in page])
            cursor = (page[-1].created, page[-1].id)
        assert pages == [
            [r.id for r in everything[0:2]], [r.id for r in everything[2:4]], [everything[4].id]
        ]  # fmt: skip

    async def test_runs_are_counted_by_creation_hour_and_current_state(
        self, store: EventStore
    ) -> None:
        hours = ["2026-11-24T05:59:59.000000+00:00", "2026-11-24T06:00:00.000000+00:00"]
        for index in range(5):
            run = RunBuilder()
            created = run.created()
            fields = {k: v for k, v in created.data.items() if k not in ENVELOPE}
            created = make_record(run.run_id, 1, created.type, fields, hours[index % 2])
            events = [created]
            if index < 2:
                events.append(run.state(Running()))
                events.append(run.state(Failed() if index == 0 else Completed()))
            await store.append(events)

        counts = await store.count_runs_by_hour("2026-11-24T05:00:00+00:00")
        assert [(c.hour, c.state_type, c.count) for c in counts] == [
            ("2026-11-24T05", "FAILED", 1),
            ("2026-11-24T05", "PENDING", 2),
            ("2026-11-24T06", "COMPLETED", 1),
            ("2026-11-24T06", "PENDING", 1),
        ]
        later = await store.count_runs_by_hour("2026-11-24T06:00:00+00:00")
        assert sum(c.count for c in later) == 2
        assert await store.count_runs_by_hour("2026-11-25T00:00:00+00:00") == []

        # A run whose states arrive in later batches moves from one count to the next.
        moving = RunBuilder()
        fields = {k: v for k, v in moving.created().data.items() if k not in ENVELOPE}
        await store.append([make_record(moving.run_id, 1, "flow_run.created", fields, hours[1])])
        await store.append([moving.state(Running())])
        counts = {(c.hour, c.state_type): c.count
                  for c in await store.count_runs_by_hour(hours[0])}  # fmt: skip
        assert counts[("2026-11-24T06", "RUNNING")] == 1
        assert counts[("2026-11-24T06", "PENDING")] == 1
        await store.append([moving.state(Completed())])
        counts = {(c.hour, c.state_type): c.count
                  for c in await store.count_runs_by_hour(hours[0])}  # fmt: skip
        assert ("2026-11-24T06", "RUNNING") not in counts
        assert counts[("2026-11-24T06", "COMPLETED")] == 2
        assert await store.verify_projections() == []
        await store.rebuild_projections()
        rebuilt = {(c.hour, c.state_type): c.count
                   for c in await store.count_runs_by_hour(hours[0])}  # fmt: skip
        assert rebuilt == counts

    async def test_prune_removes_runs_whole_and_the_rest_still_verifies(
        self, store: EventStore
    ) -> None:
        runs = [RunBuilder() for _ in range(3)]
        for run in runs:
            await store.append(run.complete_run(tasks=2))
        kept = runs[2]
        before = {c.state_type: c.count for c in await store.count_runs_by_hour("2000")}
        assert before == {"COMPLETED": 3}
        assert await store.prune([runs[0].run_id, runs[1].run_id, "not-a-run"]) == 2
        assert await store.prune([runs[0].run_id]) == 0  # again: nothing left to remove
        for gone in runs[:2]:
            assert await store.get_flow_run(gone.run_id) is None
            assert await store.read_stream(gone.run_id) == []
            assert await store.list_task_runs(gone.run_id) == []
            assert await store.get_logs(gone.run_id) == []
            assert await store.head(gone.run_id) == 0
        assert (await store.get_flow_run(kept.run_id)) is not None
        assert len(await store.list_task_runs(kept.run_id)) == 2
        assert {c.state_type: c.count for c in await store.count_runs_by_hour("2000")} == {
            "COMPLETED": 1
        }
        everything = await store.read_all(0, limit=10_000)
        assert {e.stream_id for e in everything} == {kept.run_id}
        assert await store.verify_projections() == []
        await store.rebuild_projections()
        assert await store.verify_projections() == []
        assert [r.id for r in await store.list_flow_runs()] == [kept.run_id]

    async def test_documents_are_saved_replaced_deleted_and_rebuilt(
        self, store: EventStore
    ) -> None:
        from flowbus.engine.documents import delete_document, save_document

        first = await save_document(store, "variable", "region", "eu-west-1")
        assert (first.kind, first.name, first.body, first.version) == (
            "variable", "region", "eu-west-1", 1,
        )  # fmt: skip
        await save_document(store, "variable", "batch", {"size": 500})
        second = await save_document(store, "variable", "region", "eu-central-1")
        assert second.body == "eu-central-1" and second.version == 2
        assert second.created == first.created and second.updated >= first.updated
        await save_document(store, "block", "region", {"other": "kind"})
        names = [d.name for d in await store.list_documents("variable")]
        assert names == ["batch", "region"]
        assert await delete_document(store, "variable", "batch") is True
        assert await delete_document(store, "variable", "batch") is False
        assert await store.get_document("variable", "batch") is None
        again = await save_document(store, "variable", "batch", [1, 2])
        assert again.version == 3 and again.body == [1, 2]
        assert [d.name for d in await store.list_documents("block")] == ["region"]
        assert await store.verify_projections() == []
        await store.rebuild_projections()
        assert (await store.get_document("variable", "region")) == second

    async def test_keyed_artifacts_project_their_latest_as_a_document(
        self, store: EventStore
    ) -> None:
        from flowbus.engine.artifacts import latest

        def artifact(run: RunBuilder, kind: str, artifact_id: str, data: Any) -> EventRecord:
            fields = {"artifact_id": artifact_id, "key": "daily", "artifact_type": "progress",
                      "data": data, "description": "load"}  # fmt: skip
            return run._next(f"artifact.{kind}", fields)

        first, second = RunBuilder(), RunBuilder()
        one, two = new_id(), new_id()
        await store.append([first.created(), artifact(first, "created", one, 10)])
        await store.append([artifact(first, "updated", one, 60)])
        found = await latest(store, "daily")
        assert found is not None and (found.id, found.data) == (one, 60)
        await store.append([second.created(), artifact(second, "created", two, 5),
                            artifact(second, "updated", two, 100)])  # fmt: skip
        found = await latest(store, "daily")
        assert found is not None and (found.id, found.data, found.flow_run_id) == (
            two, 100, second.run_id
        )  # fmt: skip
        assert await store.verify_projections() == []
        await store.rebuild_projections()
        assert await latest(store, "daily") == found

    async def test_a_conditional_append_writes_only_at_the_version_read(
        self, store: EventStore
    ) -> None:
        from flowbus.engine.errors import VersionConflict

        run = RunBuilder()
        first = [run.created(), run.state(Running())]
        assert await store.append_expecting(run.run_id, 0, first) == 2
        assert await store.append_expecting(run.run_id, 0, first) == 0  # the same batch again
        mine = make_record(run.run_id, 3, "flow_run.state", {"state": state_dict(Completed())})
        theirs = make_record(run.run_id, 3, "flow_run.state", {"state": state_dict(Failed())})
        await store.append_expecting(run.run_id, 2, [theirs])
        with pytest.raises(VersionConflict) as conflict:
            await store.append_expecting(run.run_id, 2, [mine])
        assert (conflict.value.expected, conflict.value.actual) == (2, 3)
        assert [e.id for e in await store.read_stream(run.run_id)][-1] == theirs.id
        with pytest.raises(ValueError):
            await store.append_expecting(run.run_id, 3, [mine])  # numbered for version 2

    async def test_transact_decides_again_after_a_conflict(self, store: EventStore) -> None:
        import asyncio

        stream = new_id()
        calls: list[int] = []

        def count_up(events: list[Any]) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
            value = len(events) + 1
            calls.append(value)
            return value, [("counter.incremented", {"value": value})]

        async def bump() -> int:
            return await store.transact(stream, count_up, attempts=200)

        replies = await asyncio.gather(*(bump() for _ in range(20)))
        assert sorted(replies) == list(range(1, 21))  # none lost, none counted twice
        values = [e.data["value"] for e in await store.read_stream(stream)]
        assert values == list(range(1, 21))
        assert len(calls) >= 20

        def nothing(events: list[Any]) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
            return "no change", []

        assert await store.transact(stream, nothing) == "no change"
        assert await store.head(stream) == 20

    async def test_subflows_are_listed_under_their_parent(self, store: EventStore) -> None:
        parent, child = RunBuilder(), RunBuilder("child")
        await store.append([parent.created(), child.created(parent=parent.run_id)])
        children = await store.list_flow_runs(parent_run_id=parent.run_id)
        assert [c.id for c in children] == [child.run_id]

    async def test_find_flow_runs_by_prefix(self, store: EventStore) -> None:
        run = RunBuilder()
        await store.append([run.created()])
        assert [r.id for r in await store.find_flow_runs(run.run_id[:20])] == [run.run_id]
        assert await store.find_flow_runs("ffffffff") == []

    async def test_logs_in_order_and_paged(self, store: EventStore) -> None:
        run = RunBuilder()
        await store.append([run.created(), *[run.log(f"line {i}") for i in range(5)]])
        lines = await store.get_logs(run.run_id)
        assert [line.message for line in lines] == [f"line {i}" for i in range(5)]
        page = await store.get_logs(run.run_id, after_seq=lines[1].seq, limit=2)
        assert [line.message for line in page] == ["line 2", "line 3"]

    async def test_rebuild_gives_the_same_projections(self, store: EventStore) -> None:
        for _ in range(3):
            run = RunBuilder()
            await store.append(run.complete_run(tasks=3, retries=1))
        before = [r.to_dict() for r in await store.list_flow_runs()]
        tasks_before = [t.to_dict() for t in await store.list_task_runs(run.run_id)]
        assert await store.verify_projections() == []
        replayed = await store.rebuild_projections()
        assert replayed == 3 * len(run.complete_run(tasks=3, retries=1))
        assert [r.to_dict() for r in await store.list_flow_runs()] == before
        assert [t.to_dict() for t in await store.list_task_runs(run.run_id)] == tasks_before
        assert await store.verify_projections() == []

    async def test_deployments_are_streams_and_a_redefinition_replaces_the_row(
        self, store: EventStore
    ) -> None:
        stream = new_id()
        first = deployment_saved(stream, 1)
        await store.append([first])
        saved = await store.get_deployment("etl-flow/daily")
        assert saved is not None and saved.id == stream and saved.queue == "default"
        assert saved.parameters == {"filename": "out.csv"}
        assert saved.parameter_schema["properties"]["url"] == {"type": "string"}
        assert (saved.version, saved.tags) == (1, ["etl"])
        await store.append([deployment_saved(stream, 2, queue="fast")])
        again = await store.get_deployment("etl-flow/daily")
        assert again is not None and (again.queue, again.version) == ("fast", 2)
        assert again.created == saved.created and again.updated >= saved.updated
        other = new_id()
        await store.append([deployment_saved(other, 1, name="report/weekly")])
        assert [d.name for d in await store.list_deployments()] == [
            "etl-flow/daily",
            "report/weekly",
        ]
        assert await store.get_deployment("nope/none") is None
        assert await store.verify_projections() == []
        await store.rebuild_projections()
        assert (await store.get_deployment("etl-flow/daily")) == again

    async def test_nul_characters_in_user_text_are_recorded(self, store: EventStore) -> None:
        run = RunBuilder()
        await store.append(
            [run.created(), run.state(Failed(message="bad\x00byte")), run.log("line\x00end")]
        )
        view = await store.get_flow_run(run.run_id)
        assert view is not None and view.state_message == "bad\ufffdbyte"
        assert [line.message for line in await store.get_logs(run.run_id)] == ["line\ufffdend"]
        events = await store.read_stream(run.run_id)
        assert events[1].data["state"]["message"] == "bad\x00byte"  # the log keeps the exact text
        assert await store.verify_projections() == []

    async def test_an_empty_store(self, store: EventStore) -> None:
        assert await store.list_flow_runs() == []
        assert await store.read_all() == []
        assert await store.get_flow_run("nope") is None
        assert await store.head("nope") == 0
        assert await store.rebuild_projections() == 0
        assert await store.verify_projections() == []
