"""A hostile agent: what a compromised agent (or the flow code it runs) can try with its own
credential of ``flowbus auth add-agent``, against a stack where every daemon runs under its own
role. Each attempt is refused, by the nats-server or by the orchestrator, and nothing of it is
recorded; the legitimate path (cancel, resume, retry) still works under the same credentials.

``mallory`` is an agent credential of the ``default`` queue, as agent-1's is; it holds no run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from flowbus.broker import subjects
from flowbus.broker.fencing import MAC_HEADER
from flowbus.broker.nats_auth import add_agent
from flowbus.broker.run_documents import DocumentRequest, signed
from flowbus.engine.actors import actor_var
from flowbus.engine.deployments import deployment_id
from flowbus.engine.event_types import EventType
from flowbus.engine.records import make_record, state_dict
from flowbus.engine.states import Completed
from tests.integration.nats_sessions import Session, connect_as
from tests.integration.stack import Stack, until, wait_until

SECRET = "sk-mallory-wants-this-1234"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the module: an orchestrator and agent-1, each under its own credential;
    the test's clients are a service."""
    root = tmp_path_factory.mktemp("hostile")
    stack = Stack(root, roles=True)
    with pytest.MonkeyPatch.context() as patch:
        stack.service_env(patch)
        try:
            stack.start_orchestrator()
            stack.cli("block", "set", "secret/api-key", f"value={SECRET}")
            stack.cli("variable", "set", "region", "eu-west-1")
            stack.start_agent("agent-1")
            yield stack
        finally:
            stack.close()


@pytest.fixture
async def mallory(stack: Stack) -> AsyncIterator[Session]:
    assert stack.roles is not None
    creds = stack.roles / "agent-mallory.creds"
    if not creds.exists():
        add_agent(stack.roles, "mallory", ("default",))
    session = await connect_as(stack.url, creds)
    try:
        yield session
    finally:
        await session.client.close()


async def held_run(stack: Stack) -> str:
    """A run agent-1 holds (running for a minute): the target of the forgeries."""
    async with stack.client() as client:
        run_id = (await client.submit(stack.deploy("sleepy"), {"seconds": 60.0})).run_id
    wait_until(lambda: "Running" in stack.states(run_id), 60, "agent-1 to run it")
    return run_id


async def cancel(stack: Stack, run_id: str) -> None:
    async with stack.client() as client:
        await client.cancel(run_id)
        assert (await client.wait(run_id, timeout=60)).name == "Cancelled"


async def dead_letters(stack: Stack) -> list[str]:
    """The reasons of the dead letters so far (read as the operator)."""
    assert stack.roles is not None
    admin = await connect_as(stack.url, stack.roles / "admin.creds")
    try:
        js = admin.client.jetstream()
        info = await js.stream_info(subjects.DEAD_LETTER_STREAM)
        sub = await js.subscribe(subjects.DEAD_LETTER_SUBJECTS, ordered_consumer=True)
        reasons = []
        for _ in range(info.state.messages):
            message = await sub.next_msg(timeout=10)
            reasons.append((message.headers or {}).get("Flowbus-Error", ""))
        return reasons
    finally:
        await admin.client.close()


async def dead_lettered(stack: Stack, before: int) -> str:
    """The reason of the next dead letter after ``before`` of them."""

    async def arrived() -> bool:
        return len(await dead_letters(stack)) > before

    await until(arrived, 30, "the dead letter")
    return (await dead_letters(stack))[before]


async def test_it_cannot_complete_a_run_another_agent_holds(stack: Stack, mallory: Session) -> None:
    run_id = await held_run(stack)
    before, head = len(await dead_letters(stack)), len(stack.stream(run_id))
    forged = make_record(run_id, head + 1, EventType.FLOW_RUN_STATE,
                         {"state": state_dict(Completed()), "result": "999"})  # fmt: skip
    fence = {subjects.RUN_HEADER: run_id, subjects.ATTEMPT_HEADER: "1", MAC_HEADER: "00" * 32}
    subject = subjects.event_subject(run_id, EventType.FLOW_RUN_STATE)
    await mallory.allows(lambda: mallory.js.publish(subject, forged.body(), headers=fence))
    assert "forged" in await dead_lettered(stack, before)
    assert stack.states(run_id)[-1] == "Running"
    await cancel(stack, run_id)  # the legitimate path: a service cancels it


async def test_it_cannot_publish_a_store_only_event(stack: Stack, mallory: Session) -> None:
    deployment = stack.deploy("quick", "target")
    saved = stack.with_store(lambda s: s.read_stream(deployment_id(deployment)))[-1]
    fields = {k: v for k, v in saved.data.items()
              if k not in ("id", "stream_id", "seq", "type", "occurred")}  # fmt: skip
    forged = make_record(saved.stream_id, saved.seq + 1, EventType.DEPLOYMENT_SAVED,
                         {**fields, "entrypoint": "evil.py:steal"})  # fmt: skip
    before = len(await dead_letters(stack))
    subject = subjects.event_subject(saved.stream_id, EventType.DEPLOYMENT_SAVED)
    await mallory.allows(lambda: mallory.js.publish(subject, forged.body()))
    assert (await dead_lettered(stack, before)).startswith("store-only")
    after = stack.with_store(lambda s: s.read_stream(deployment_id(deployment)))
    assert after[-1].id == saved.id


async def test_it_cannot_answer_an_orchestrator_subject(mallory: Session) -> None:
    for subject in (subjects.SUBMIT, subjects.CANCEL, subjects.DOCUMENTS,
                    subjects.claim_subject("default"), subjects.HEARTBEAT):  # fmt: skip
        await mallory.refuses(
            lambda s=subject: mallory.client.subscribe(s, queue=subjects.ORCHESTRATOR_GROUP)
        )
    await mallory.refuses(lambda: mallory.client.publish("$KV.flowbus_leader.leader", b"me"))
    await mallory.refuses(lambda: mallory.client.subscribe("flowbus.agent.agent-1.cancel"))
    await mallory.refuses(lambda: mallory.client.subscribe("_INBOX_agent-1.>"))  # its grants


async def test_it_cannot_claim_a_run_of_a_queue_not_its_own(stack: Stack, mallory: Session) -> None:
    async with stack.client() as client:
        run_id = (await client.submit(stack.deploy("quick", "other", queue="other"), {})).run_id
    claim = b'{"run_id": "%s", "agent": "mallory"}' % run_id.encode()
    await mallory.refuses(
        lambda: mallory.client.request(subjects.claim_subject("other"), claim, timeout=1)
    )
    reply = await mallory.allows(  # named by its own queue's subject: the orchestrator refuses
        lambda: mallory.client.request(subjects.claim_subject("default"), claim, timeout=5)
    )
    assert b'"reason":"illegal"' in reply.data
    assert stack.states(run_id) == ["Scheduled"]


async def test_it_cannot_delete_or_purge_a_stream(stack: Stack, mallory: Session) -> None:
    for stream in (subjects.EVENTS_STREAM, subjects.RUNS_STREAM, subjects.DEAD_LETTER_STREAM):
        await mallory.refuses(lambda s=stream: mallory.js.purge_stream(s))
        await mallory.refuses(lambda s=stream: mallory.js.delete_stream(s))
    async with stack.client() as client:  # everything still there and served
        run_id = (await client.submit(stack.deploy("quick"), {"n": 2})).run_id
        assert (await client.wait(run_id, timeout=60)).completed


async def test_it_cannot_read_a_block_for_a_run_it_does_not_hold(
    stack: Stack, mallory: Session
) -> None:
    run_id = await held_run(stack)
    async with stack.client() as client:
        queued = (await client.submit(stack.deploy("quick", "elsewhere", queue="other"),
                                      {})).run_id  # fmt: skip

    async def ask(run: str, key: bytes) -> bytes:
        request = signed(DocumentRequest(run_id=run, attempt=1, action="block",
                                         name="secret/api-key"), key)  # fmt: skip
        answer = await mallory.allows(
            lambda: mallory.client.request(subjects.DOCUMENTS, request.dump(), timeout=5)
        )
        data: bytes = answer.data
        return data

    for run, key in ((run_id, b"m" * 32), (queued, b"m" * 32), (run_id, b"")):
        answer = await ask(run, key)
        assert b'"code":"refused"' in answer and SECRET.encode() not in answer, answer

    async def block_reads(store: Any) -> list[str]:
        events = await store.read_all(0, limit=100_000)
        return [e.data["run_id"] for e in events if e.type == EventType.BLOCK_READ]

    assert stack.with_store(block_reads) == []
    await cancel(stack, run_id)


async def test_the_legitimate_path_resumes_retries_and_loads_blocks(stack: Stack) -> None:
    async with stack.client() as client:
        paused = (await client.submit(stack.deploy("needs_approval"), {"timeout": 120})).run_id
        failing = (await client.submit(stack.deploy("fails"), {})).run_id
        secret = (await client.submit(stack.deploy("uses_secret"), {})).run_id
        wait_until(lambda: stack.states(paused)[-1] == "Paused", 60, "the pause")
        claimed = actor_var.set("alice")  # what the service says; its credential says otherwise
        try:
            await client.resume(paused, {"approved": True, "note": "ok"})
        finally:
            actor_var.reset(claimed)
        assert (await client.wait(paused, timeout=60)).completed
        assert await client.result(paused) == "approved: ok"
        assert (await client.wait(failing, timeout=60)).name == "Failed"
        await client.retry(failing)  # a new attempt of the same run: it fails again
        wait_until(lambda: stack.states(failing).count("Failed") == 2, 60, "the second attempt")
        assert (await client.wait(secret, timeout=60)).completed
    # Who did it is the signed credential's user, whatever a request says.
    trail = stack.with_store(lambda s: s.list_audit(subject=paused))
    assert {(a.action, a.actor) for a in trail} == {
        ("run.submitted", "nats:service"), ("run.scheduled", "nats:service")
    }  # fmt: skip
