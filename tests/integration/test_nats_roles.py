"""NATS identities per role (``flowbus auth init``) on a real nats-server started with them:
each role may do its job, and what it may not is refused by the server itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest

from flowbus.broker import EmbeddedNatsServer, subjects
from flowbus.broker.nats_auth import add_agent, init
from flowbus.broker.run_documents import DocumentRequest, signed
from flowbus.broker.streams import ensure_queue_consumer, ensure_streams
from flowbus.engine.errors import UsageError
from tests.integration.nats_sessions import Session, connect_as

LEADER_BUCKET = "flowbus_leader"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedNatsServer, Path]]:
    folder = tmp_path / "auth"
    init(folder)
    add_agent(folder, "a1", ("etl",))
    nats_server = EmbeddedNatsServer(tmp_path / "js", auth_config=folder / "auth.conf").start()
    try:
        yield nats_server, folder
    finally:
        nats_server.stop()


async def session(server: tuple[EmbeddedNatsServer, Path], creds: str) -> Session:
    nats_server, folder = server
    return await connect_as(nats_server.url, folder / creds)


async def take(who: Session, queue: str) -> bytes:
    """One request from ``queue``, as an agent takes it (a pull answered on its own inbox)."""
    inbox = who.client.new_inbox()
    answers = await who.client.subscribe(inbox)
    await who.client.publish(
        f"$JS.API.CONSUMER.MSG.NEXT.{subjects.RUNS_STREAM}.{subjects.queue_consumer(queue)}",
        b'{"batch": 1, "no_wait": true}',
        reply=inbox,
    )
    try:
        return (await answers.next_msg(timeout=2)).data
    finally:
        await answers.unsubscribe()


async def test_each_role_does_its_job_and_no_more(
    server: tuple[EmbeddedNatsServer, Path],
) -> None:
    orchestrator = await session(server, "orchestrator.creds")
    await orchestrator.allows(lambda: ensure_streams(orchestrator.js))
    for queue in ("etl", "other"):
        await orchestrator.allows(lambda q=queue: ensure_queue_consumer(orchestrator.js, q, 10, 30))
    await orchestrator.allows(lambda: orchestrator.js.publish(subjects.run_subject("etl"), b"{}"))
    await orchestrator.allows(lambda: orchestrator.js.publish(subjects.run_subject("other"), b"{}"))
    # Nobody's data is deleted by the orchestrator's credential.
    await orchestrator.refuses(lambda: orchestrator.js.purge_stream(subjects.EVENTS_STREAM))
    await orchestrator.refuses(lambda: orchestrator.js.delete_stream(subjects.EVENTS_STREAM))

    agent = await session(server, "agent-a1.creds")
    assert await agent.allows(lambda: take(agent, "etl")) == b"{}"  # its own queue's request
    await agent.refuses(lambda: take(agent, "other"))  # another queue's is not its to take
    await agent.refuses(lambda: agent.js.delete_stream(subjects.EVENTS_STREAM))
    await agent.refuses(lambda: agent.js.purge_stream(subjects.RUNS_STREAM))
    await agent.refuses(lambda: agent.js.add_stream(name="MINE", subjects=["mine.>"]))
    await agent.refuses(
        lambda: agent.client.subscribe(subjects.SUBMIT, queue="flowbus-orchestrator")
    )
    await agent.refuses(lambda: agent.client.subscribe(subjects.CLAIM))  # answer claims: no
    await agent.refuses(lambda: agent.client.publish(f"$KV.{LEADER_BUCKET}.leader", b"me"))
    await agent.refuses(lambda: agent.client.subscribe("_INBOX_service.>"))  # others' replies
    await agent.refuses(lambda: agent.client.subscribe("flowbus.agent.a2.cancel"))
    await agent.allows(lambda: agent.client.subscribe("flowbus.agent.a1.cancel"))
    # Replicas sharing the credential (one queue's pods) are named a1.<instance>.
    await agent.allows(lambda: agent.client.subscribe("flowbus.agent.a1.pod-7.cancel"))
    await agent.refuses(lambda: agent.client.subscribe("flowbus.agent.a2.pod-7.cancel"))
    await agent.allows(lambda: agent.js.publish("flowbus.event.r1.log", b"{}"))

    service = await session(server, "service.creds")
    with pytest.raises(nats.errors.NoRespondersError):  # allowed; nobody answers here
        await service.allows(lambda: service.client.request(subjects.SUBMIT, b"{}", timeout=1))
    await service.refuses(lambda: service.js.publish("flowbus.event.r1.flow_run.state", b"{}"))
    await service.refuses(lambda: service.client.publish(subjects.CLAIM, b"{}"))
    await service.refuses(lambda: service.js.purge_stream(subjects.RUNS_STREAM))

    viewer = await session(server, "viewer.creds")
    follow = await viewer.allows(
        lambda: viewer.js.subscribe("flowbus.event.>", ordered_consumer=True)
    )
    assert (await follow.next_msg(timeout=5)).subject == "flowbus.event.r1.log"
    await viewer.refuses(lambda: viewer.client.publish(subjects.SUBMIT, b"{}"))
    await viewer.refuses(lambda: viewer.client.publish(subjects.CANCEL, b"{}"))

    admin = await session(server, "admin.creds")  # the operator's: may purge
    await admin.allows(lambda: admin.js.purge_stream(subjects.EVENTS_STREAM))
    for each in (orchestrator, agent, service, viewer, admin):
        await each.client.close()


def test_identities_are_made_once_and_names_are_checked(tmp_path: Path) -> None:
    folder = tmp_path / "auth"
    written = init(folder)
    assert {p.name for p in written} == {
        "auth.conf", "admin.creds", "orchestrator.creds", "service.creds", "viewer.creds"
    }  # fmt: skip
    assert all(p.stat().st_mode & 0o077 == 0 for p in written if p.suffix == ".creds")
    assert (folder / "keys" / "account.seed").stat().st_mode & 0o077 == 0
    with pytest.raises(UsageError, match="already"):
        init(folder)
    with pytest.raises(UsageError, match="lowercase"):
        add_agent(folder, "Bad Name", ("etl",))
    with pytest.raises(UsageError, match="queue"):
        add_agent(folder, "a2", ())
    with pytest.raises(UsageError, match="may not be named"):
        add_agent(folder, "service", ("etl",))
    with pytest.raises(UsageError, match="orchestrator's subjects"):
        add_agent(folder, "claim", ("etl",))  # it would hear every claim


def test_an_agent_under_a_shared_credential_takes_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowbus.agents.agent_settings import default_agent_name

    folder = tmp_path / "auth"
    init(folder)
    monkeypatch.setenv("FLOWBUS_NATS_CREDS", str(add_agent(folder, "etl-pods", ("etl",))))
    assert default_agent_name().startswith("etl-pods.")
    assert "." not in default_agent_name().removeprefix("etl-pods.")
    monkeypatch.setenv("FLOWBUS_NATS_CREDS", str(folder / "service.creds"))
    assert "." not in default_agent_name()


async def test_a_run_end_to_end_with_a_credential_per_role(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The orchestrator, an agent and a service each with its own credential: a run is
    submitted, run and its result read; the agent cannot claim a run of a queue not its own."""
    from tests.integration.stack import Stack

    folder = tmp_path / "auth"
    init(folder)
    agent_creds = add_agent(folder, "agent-1", ("default",))
    service = str(folder / "service.creds")
    stack = Stack(tmp_path / "stack", env={"FLOWBUS_NATS_CREDS": service},
                  auth_config=folder / "auth.conf")  # fmt: skip
    stack.share_results(monkeypatch)
    monkeypatch.setenv("FLOWBUS_NATS_CREDS", service)  # this test is a service
    try:
        stack.start_orchestrator({"FLOWBUS_NATS_CREDS": str(folder / "orchestrator.creds")})
        mine, other = stack.deploy("quick"), stack.deploy("quick", "elsewhere", queue="other")
        stack.cli("block", "set", "secret/api-key", "value=sk-123456")
        stack.cli("variable", "set", "region", "eu-west-1")
        uses_secret = stack.deploy("uses_secret")
        stack.start_agent("agent-1", env={"FLOWBUS_NATS_CREDS": str(agent_creds)})
        async with stack.client() as client:
            run = await client.submit(mine, {"n": 3})
            assert (await client.wait(run.run_id, timeout=60)).completed
            assert await client.result(run.run_id) == 6
            queued = (await client.submit(other, {"n": 1})).run_id  # no agent serves "other"
            with_block = (await client.submit(uses_secret, {})).run_id
            assert (await client.wait(with_block, timeout=60)).completed

        agent = await session((stack.server, folder), agent_creds.name)
        claim = b'{"run_id": "%s", "agent": "agent-1"}' % queued.encode()
        reply = await agent.allows(
            lambda: agent.client.request(subjects.claim_subject("default"), claim, timeout=5)
        )
        assert b'"reason":"illegal"' in reply.data and b"not this agent's" in reply.data
        await agent.refuses(  # its credential may not even ask for another queue's runs
            lambda: agent.client.request(subjects.claim_subject("other"), claim, timeout=1)
        )
        # Nor may it read a block for a run it does not hold (queued, or finished), even
        # signed with a key of its own making: refused, and nothing handed out is recorded.
        for run_id in (queued, run.run_id):
            request = signed(DocumentRequest(run_id=run_id, attempt=1, action="block",
                                             name="secret/api-key"), b"k" * 32)  # fmt: skip
            answer = await agent.allows(
                lambda r=request: agent.client.request(subjects.DOCUMENTS, r.dump(), timeout=5)
            )
            assert b'"code":"refused"' in answer.data and b"sk-123456" not in answer.data
        await agent.client.close()
        assert stack.states(queued) == ["Scheduled"]

        async def block_reads(store: Any) -> list[str]:
            events = await store.read_all(0, limit=100_000)
            return [e.data["run_id"] for e in events if e.type == "block.read"]

        assert stack.with_store(block_reads) == [with_block]
    finally:
        stack.close()
