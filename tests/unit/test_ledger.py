"""The orchestrator's ledger: claims open fenced attempts, decisions are compare-and-swap, facts
a decision asks for are read outside the run's lock (the memory store: logic only)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from flowbus.agents.decisions.claims import decide_claim
from flowbus.agents.decisions.model import Change, Decision, Facts, NeedFacts, Now, StreamHead
from flowbus.agents.ledger import RunLedger
from flowbus.agents.orchestrator.store_audit import LOOKBACK, follow_unknown_runs
from flowbus.agents.run_entry import RunEntry, fold
from flowbus.broker import protocol as p
from flowbus.engine.clock import canonical
from flowbus.engine.errors import TransitionRejected
from flowbus.engine.records import EventRecord, make_record, state_dict
from flowbus.engine.states import Completed, Crashed, Running, Scheduled, StateType
from flowbus.engine.store import MemoryEventStore

from .decision_tables import deployment

RUN = "01a20000-0000-7000-8000-000000000001"


def created(run_id: str = RUN, state: Any = None) -> EventRecord:
    state = state or Scheduled()
    fields = {
        "flow_name": "f", "name": "brave-otter", "flow_version": None, "parameters": {"n": 1},
        "tags": [], "parent_run_id": None, "parent_task_run_id": None, "deployment": "f/d",
        "queue": "default", "idempotency_key": None, "state": state_dict(state),
    }  # fmt: skip
    return make_record(run_id, 1, "flow_run.created", fields, state.timestamp_iso)


def agent_state(seq: int, state: object) -> EventRecord:
    return make_record(RUN, seq, "flow_run.state", {"state": state_dict(state), "result": None})  # type: ignore[arg-type]


@pytest.fixture
async def ledger() -> RunLedger:
    store = MemoryEventStore()
    await store.open()
    await store.append([created()])
    ledger = RunLedger(store, lease_seconds=5)
    assert await ledger.load() == 1
    return ledger


FACTS = Facts(deployment=deployment(), stream_head=None)


async def claim(ledger: RunLedger, agent: str) -> int:
    request = p.ClaimRequest(run_id=RUN, agent=agent)
    verdict, _, _ = await ledger.take(
        RUN, lambda entry, facts, now: decide_claim(entry, request, facts, now, 5.0), facts=FACTS
    )
    assert isinstance(verdict.reply, p.ClaimGrant), verdict.reply
    return verdict.reply.attempt


def record(*changes: Change) -> Any:
    """A decision that records ``changes`` whatever the run is."""
    return lambda entry, facts, now: Decision(None, changes)


async def test_a_claim_opens_an_attempt_whose_events_alone_are_admitted(ledger: RunLedger) -> None:
    assert await claim(ledger, "a") == 1
    entry = ledger.entries[RUN]
    assert (entry.state, entry.agent, entry.attempt, entry.held) == (
        StateType.PENDING,
        "a",
        1,
        True,
    )
    assert not entry.lease_expired(time.monotonic())  # the claim's lease starts
    running = agent_state(3, Running())
    admitted, fenced = await ledger.admit(
        [(running, (RUN, 1)), (agent_state(3, Running()), (RUN, 2))]
    )
    assert admitted == [0] and fenced[0][0] == 1
    assert entry.state is StateType.RUNNING and entry.seq == 3  # applied before its commit


async def test_a_crash_closes_the_attempt_and_a_new_claim_supersedes_it(ledger: RunLedger) -> None:
    await claim(ledger, "a")
    await ledger.take(RUN, record(Change(Crashed(message="lease expired"), close=True)))
    late = agent_state(3, Completed())
    assert (await ledger.admit([(late, (RUN, 1))]))[0] == []  # the zombie's Completed: fenced
    entry = ledger.entries[RUN]
    assert entry.crashes == 1 and not entry.held
    events = await ledger.store.read_stream(RUN)
    assert events[-1].data["closes_attempt"] == 1  # a run folded from the store knows it too


async def test_the_rule_table_refuses_an_illegal_decision(ledger: RunLedger) -> None:
    with pytest.raises(TransitionRejected):
        await ledger.take(RUN, record(Change(Completed())))  # Scheduled -> Completed skips
    assert ledger.entries[RUN].seq == 1
    assert len(await ledger.store.read_stream(RUN)) == 1


async def test_a_decision_on_a_stale_head_is_taken_again(ledger: RunLedger) -> None:
    line = {"task_run_id": None, "level": 20, "logger": "x", "message": "hi"}
    await ledger.store.append([make_record(RUN, 2, "log", line)])
    assert ledger.entries[RUN].seq == 1  # the ledger has not seen it
    assert await claim(ledger, "a") == 1
    events = await ledger.store.read_stream(RUN)
    assert [e.seq for e in events] == [1, 2, 3] and events[2].data["agent"] == "a"


async def test_facts_a_decision_asks_for_are_read_outside_the_lock(ledger: RunLedger) -> None:
    asked: list[NeedFacts] = []

    async def gather(need: NeedFacts, run_id: str, entry: Any, facts: Facts) -> Facts:
        assert not ledger.locks._locks, "facts are read with no run's lock held"
        asked.append(need)
        return facts.with_(stream_head=StreamHead(9, 1))

    def decide(entry: RunEntry | None, facts: Facts, now: Now) -> Any:
        if facts.stream_head is None:
            return NeedFacts(stream_head=True)
        return Decision(facts.stream_head.seq)

    verdict, _, records = await ledger.take(RUN, decide, gather, Facts(stream_head=None))
    assert verdict.reply == 9 and records == [] and asked == [NeedFacts(stream_head=True)]


async def test_leases_expire_and_fold_rebuilds_an_entry(ledger: RunLedger) -> None:
    await claim(ledger, "a")
    entry = ledger.entries[RUN]
    assert not entry.lease_expired(time.monotonic())
    assert entry.lease_expired(time.monotonic() + 6)
    rebuilt = fold(await ledger.store.read_stream(RUN))
    assert rebuilt is not None
    assert (rebuilt.state, rebuilt.agent, rebuilt.attempt, rebuilt.open) == (
        StateType.PENDING, "a", 1, True
    )  # fmt: skip


def test_runs_that_are_not_a_deployments_have_no_entry() -> None:
    local = created()
    local.data["deployment"] = None
    assert fold([local]) is None


async def test_the_store_audit_follows_the_recent_unfinished_runs_the_ledger_lacks(
    ledger: RunLedger,
) -> None:
    """A run committed and never announced is followed as another orchestrator's; runs the
    ledger holds, finished runs and runs older than the lookback (read at the election) are
    left alone."""
    old = datetime.fromtimestamp(time.time() - LOOKBACK - 60, UTC)
    unknown, finished, older = (f"01a20000-0000-7000-8000-00000000000{n}" for n in (2, 3, 4))
    await ledger.store.append([created(unknown), created(finished, Completed()),
                               created(older, Scheduled(timestamp=canonical(old)))])  # fmt: skip
    told: list[str] = []
    ledger.on_foreign = lambda entry: told.append(entry.run_id)
    assert await follow_unknown_runs(ledger) == [unknown]
    entry = ledger.entries[unknown]
    assert entry.foreign and entry.published and told == [unknown]
    assert finished not in ledger.entries and older not in ledger.entries
    assert await follow_unknown_runs(ledger) == []  # followed once
