"""What anyone who may publish on the events stream cannot do (the embedded default: no NATS
auth): complete a deployment's run it does not hold, redefine a deployment, feed the leader a
decision the store does not hold, or make a reader unpickle bytes flowbus did not write."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import nats
import pytest

from flowbus.broker import subjects
from flowbus.client import ClientError
from flowbus.engine.deployments import deployment_id
from flowbus.engine.ids import new_id
from flowbus.engine.records import EventRecord, make_record, state_dict
from flowbus.engine.states import Completed, Pending, Running
from tests.integration.stack import Stack, until, wait_until


class MakesADirectory:
    """Unpickling this makes a directory: the sign that code from the bytes ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (self.path,))


async def publish(url: str, record: EventRecord, headers: dict[str, str] | None = None) -> None:
    connection = await nats.connect(url)
    try:
        await connection.jetstream().publish(
            subjects.event_subject(record.stream_id, record.type), record.body(), headers=headers
        )
    finally:
        await connection.close()


async def dead_letter_reasons(url: str) -> list[str]:
    connection = await nats.connect(url)
    try:
        js = connection.jetstream()
        sub = await js.subscribe(subjects.DEAD_LETTER_SUBJECTS, ordered_consumer=True)
        info = await js.stream_info(subjects.DEAD_LETTER_STREAM)
        reasons = []
        for _ in range(info.state.messages):
            message = await sub.next_msg(timeout=10)
            reasons.append((message.headers or {}).get("Flowbus-Error", ""))
        return reasons
    finally:
        await connection.close()


def completed(run_id: str, seq: int, output: dict[str, Any]) -> EventRecord:
    fields = {"state": state_dict(Completed()), "result": "999", "output": output}
    return make_record(run_id, seq, "flow_run.state", fields)


async def test_nobody_but_its_holder_records_a_deployed_runs_events(stack: Stack) -> None:
    stack.start_orchestrator()
    deployment = stack.deploy("quick")
    async with stack.client() as client:
        run = (await client.submit(deployment, {"n": 3})).run_id
        wait_until(lambda: stack.states(run) == ["Scheduled"], what="the run to be queued")
        head = len(stack.stream(run))
        saved = stack.with_store(lambda s: s.read_stream(deployment_id(deployment)))[-1]

        # 1. "Recorded" by an orchestrator, says a header anyone can set: not in the store, so
        #    the leader's copy of the run does not take it (else the claim below is refused).
        await publish(stack.url, completed(run, head + 1, {"json": 999}),
                      {subjects.RECORDED_HEADER: "1"})  # fmt: skip
        # 2. No fence: not published by the run's holder.
        await publish(stack.url, completed(run, head + 1, {"json": 999}))
        # 3. A fence no claim opened.
        await publish(stack.url, completed(run, head + 1, {"json": 999}),
                      {subjects.RUN_HEADER: run, subjects.ATTEMPT_HEADER: "1"})  # fmt: skip
        # 4. A deployment pointed at other code: a store-only type, never recorded off the wire.
        envelope = ("id", "stream_id", "seq", "type", "occurred")
        fields = {k: v for k, v in saved.data.items() if k not in envelope}
        fields["entrypoint"] = "elsewhere.py:evil"
        forged = make_record(saved.stream_id, saved.seq + 1, "deployment.saved", fields)
        await publish(stack.url, forged)

        async def three_refused() -> bool:
            return len(await dead_letter_reasons(stack.url)) >= 3

        await until(three_refused, 30, "three dead letters")
        reasons = sorted(r.split(":")[0] for r in await dead_letter_reasons(stack.url))
        assert reasons == ["fenced", "store-only", "unfenced"], reasons
        assert stack.states(run) == ["Scheduled"]
        after = stack.with_store(lambda s: s.read_stream(deployment_id(deployment)))
        assert after[-1].id == saved.id

        stack.start_agent("agent-1")
        final = await client.wait(run, timeout=60)
        assert final.completed, final
        assert await client.result(run) == 6  # computed by the agent, not the forger's 999
    assert stack.final_states(run) == ["Scheduled", "Pending", "Running", "Completed"]

    # 5. The agent's own headers, MAC included, copied onto other bytes.
    recorded = len(stack.stream(run))
    held = await stream_message(stack.url, run, "RUNNING")
    copied = {k: v for k, v in (held.headers or {}).items() if k != "Nats-Msg-Id"}
    await publish(stack.url, completed(run, 5, {"json": 999}), copied)

    async def four_refused() -> bool:
        return len(await dead_letter_reasons(stack.url)) >= 4

    await until(four_refused, 30, "the fourth dead letter")
    assert "forged" in (await dead_letter_reasons(stack.url))[-1]
    assert len(stack.stream(run)) == recorded


async def stream_message(url: str, run_id: str, state_type: str) -> Any:
    """A run's state event as the events stream holds it, headers included."""
    import orjson

    connection = await nats.connect(url)
    try:
        sub = await connection.jetstream().subscribe(
            subjects.event_subject(run_id, "flow_run.state"), ordered_consumer=True
        )
        while True:
            message = await sub.next_msg(timeout=10)
            if orjson.loads(message.data)["state"]["type"] == state_type:
                return message
    finally:
        await connection.close()


@pytest.mark.parametrize("where", ["data-url", "outside-storage", "unsealed-in-storage"])
async def test_a_forged_result_is_refused_by_every_reader(
    stack: Stack, tmp_path: Path, where: str
) -> None:
    """A run by hand records without a fence, so its Completed event can name any ``ref``: the
    CLI and the client refuse to read it, and no code from its bytes runs."""
    import base64

    stack.start_orchestrator()
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(MakesADirectory(marker))
    if where == "data-url":
        ref = "data:application/octet-stream;base64," + base64.b64encode(payload).decode()
    else:
        folder = tmp_path if where == "outside-storage" else stack.home / "results" / "runs"
        (folder / "planted").parent.mkdir(parents=True, exist_ok=True)
        (folder / "planted").write_bytes(payload)
        ref = str(folder / "planted")
    run_id = new_id()
    created = make_record(run_id, 1, "flow_run.created", {
        "flow_name": "by-hand", "name": "forged", "flow_version": None, "parameters": {},
        "tags": [], "parent_run_id": None, "parent_task_run_id": None, "deployment": None,
        "state": state_dict(Pending())})  # fmt: skip
    running = make_record(run_id, 2, "flow_run.state",
                          {"state": state_dict(Running()), "result": None})  # fmt: skip
    done = completed(run_id, 3, {"ref": ref, "serializer": "cloudpickle"})
    for record in (created, running, done):
        await publish(stack.url, record)
    stack.final_states(run_id)

    cli = stack.cli("runs", "result", run_id, check=False)
    assert cli.returncode != 0
    said = " ".join(cli.stderr.split())  # as the console wrapped it
    assert "outside result storage" in said or "not sealed" in said, said
    async with stack.client() as client:
        with pytest.raises(ClientError) as refused:
            await client.result(run_id)
    assert refused.value.code == "result_unavailable"
    assert not marker.exists()


async def test_a_client_waits_for_what_the_store_recorded_not_what_anyone_published(
    stack: Stack,
) -> None:
    """A Completed published by somebody else while the run sleeps, at the sequence number the
    run's next event will take: the recorder refuses it, and ``Client.wait`` and
    ``Client.result`` see on the stream an event the store does not hold there, so they go on
    to the run's real end."""
    stack.start_orchestrator()
    deployment = stack.deploy("sleepy")
    stack.start_agent("agent-1")
    async with stack.client() as client:
        run = (await client.submit(deployment, {"seconds": 3})).run_id
        wait_until(lambda: "Running" in stack.states(run), what="the run to start")
        await publish(stack.url, completed(run, len(stack.stream(run)) + 1, {"json": 999}))
        final = await client.wait(run, timeout=60)
        assert final.completed and final.result != "999"
        assert await client.result(run) == "slept 3.0"
