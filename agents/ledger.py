"""The orchestrator's ledger: every run of a deployment that is not over, and every write to
their streams.

The store is the truth; the ledger is an orchestrator's copy of what it needs to arbitrate
(state, stream head, claim attempt, lease). Each decision is compare-and-swap (``take``): a
pure decision (``agents/decisions``) is taken under the run's own lock on the run's current
version (its stream head), its changes are applied to the copy and appended at ``head + 1``,
and a store that already holds another event there (``SequenceError``) sends the decision
round again on the reloaded run. Decisions about many runs share one transaction
(``BatchWriter``); decisions about different runs never wait for each other. Facts a
decision asks for (``NeedFacts``) are read outside the lock, then it is taken again.

Several orchestrators write the same runs, so a copy can be behind the store. The leader's
ledger holds every unfinished run (loaded when it is elected) and follows what the others
commit (``observe``); a follower reads each run from the store before deciding on it. A
decision that writes nothing (a refusal, "nothing to do") was taken on a copy that may be behind
the store, so it is taken again on a fresh read before it is answered: no claim is refused, and
no agent told it lost a run, because of a stale copy.

Fencing: a claim opens attempt ``n`` of a run; events an agent publishes carry the attempt, and
the recorder admits them only while attempt ``n`` is the run's open attempt. A crash, a fallback
cancel, a hand-back or the next claim closes it (the event says so: ``closes_attempt``), so a
zombie agent's late events are refused whatever its JetStream acks did.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import structlog

from flowbus.agents.crash_budgets import CrashBudgets
from flowbus.agents.decisions.model import Decision, Facts, NeedFacts, Now
from flowbus.agents.heard_leases import HeardLeases
from flowbus.agents.run_entries import RunEntries
from flowbus.agents.run_entry import (
    RunEntry,
    apply_change,
    apply_state,
    created_record,
    entry_from_created,
    fold,
    holds,
)
from flowbus.agents.run_locks import RunLocks
from flowbus.engine.errors import SequenceError, StoreError
from flowbus.engine.event_types import EventType
from flowbus.engine.events import FlowRunCreated, FlowRunStateChanged
from flowbus.engine.records import EventRecord
from flowbus.engine.states import StateType
from flowbus.engine.store import EventStore
from flowbus.engine.store.batch_writer import BatchWriter

log = structlog.get_logger("flowbus.orchestrator")

S = StateType
#: The states of a run that is not over: the leader holds every such run of a deployment.
UNFINISHED = (S.SCHEDULED, S.PENDING, S.RUNNING, S.PAUSED, S.CANCELLING)
#: A finished run stays in memory this long (late events of its attempt are still admitted).
KEEP_FINISHED = 600.0
#: ... and at most this many of them, the newest: one dropped sooner is read from the store when
#: it is asked for again, as after a restart. Each full collection of the cycle collector walks
#: every one kept (50,000 kept: 100-160 ms with nothing answered, about once a second under
#: load; 5,000: 3-68 ms), besides some 870 bytes each.
KEEP_FINISHED_AT_MOST = 5_000
#: A follower keeps a run it read this long (it reads the store again before each decision).
KEEP_READ = 30.0
#: A decision taken again this many times (conflicts, facts asked for) gives up.
MAX_ROUNDS = 10

R = TypeVar("R")
#: A decision as the ledger takes it: the run's entry, the facts read so far, the time.
Decide = Callable[[RunEntry | None, Facts, Now], "Decision[R] | NeedFacts"]
#: Reads the facts a decision on a run asked for (outside the run's lock).
Gather = Callable[[NeedFacts, str, RunEntry | None, Facts], Awaitable[Facts]]


def now() -> Now:
    return Now(time.monotonic(), time.time())


class RunLedger:
    """The runs under way, decided on one at a time; admits agents' events by attempt."""

    def __init__(
        self,
        store: EventStore,
        lease_seconds: float = 30.0,
        published: Callable[[list[EventRecord]], None] | None = None,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.entries = RunEntries()
        self.locks = RunLocks()
        self.writer = BatchWriter(store)
        #: Whether this ledger holds every unfinished run and follows the others' commits (the
        #: leader's); a follower's reads each run from the store before deciding on it.
        self.authoritative = True
        #: Called with the events the ledger wrote, once committed (to publish them).
        self._published = published or (lambda records: None)
        #: Called with an entry the moment it reaches a final state (slots and deployment
        #: limits free up then, pushed rather than found by a sweep).
        self.on_finished: Callable[[RunEntry], None] = lambda entry: None
        #: Called with a run another orchestrator queued, when the leader learns of it.
        self.on_foreign: Callable[[RunEntry], None] = lambda entry: None
        #: Each deployment's crash-recovery budget (a new run's copy carries it).
        self.crash_budgets = CrashBudgets(store)
        #: What agents' heartbeats said of the runs they hold, and the leases it gave.
        self.leases = HeardLeases(lease_seconds)

    # --- loading ---------------------------------------------------------------------------

    async def load(self) -> int:
        """Read every unfinished run of a deployment from the store (replacing what was held);
        return how many."""
        self.entries.clear()
        for state_type in UNFINISHED:
            for run in await self.store.list_flow_runs(state=state_type.value, limit=10**9):
                if run.deployment and run.id not in self.entries:
                    async with self.locks.hold(run.id):
                        await self._load(run.id)
        self.leases.renew_all(self.entries.values(), time.monotonic())
        return len(self.entries)

    async def _load(self, run_id: str) -> RunEntry | None:
        previous = self.entries.get(run_id)
        entry = fold(await self.store.read_stream(run_id))
        if entry is not None:
            entry.crash_retries = await self.crash_budgets.of(entry.deployment)
            entry.lease_until = time.monotonic() + self.lease_seconds
            if previous is not None and previous.attempt == entry.attempt:
                # The same holder: the lease its heartbeats renewed is kept (a read again is
                # no heartbeat), as is what is known of the request's publication.
                entry.lease_until = previous.lease_until
                entry.published_seq = previous.published_seq
                entry.foreign = previous.foreign and entry.published
            self.leases.apply(entry)
            self.entries[run_id] = entry
        else:
            self.entries.pop(run_id, None)
        return entry

    async def get(self, run_id: str, fresh: bool = False) -> RunEntry | None:
        """The run's entry (call under the run's lock): the copy in memory when this ledger is
        authoritative and ``fresh`` is not asked for, else read from the store."""
        entry = self.entries.get(run_id)
        if entry is None or fresh or not self.authoritative:
            return await self._load(run_id)
        self.leases.apply(entry)
        return entry

    # --- deciding --------------------------------------------------------------------------

    async def take(
        self,
        run_id: str,
        decide: Decide[R],
        gather: Gather | None = None,
        facts: Facts | None = None,
        new: bool = False,
    ) -> tuple[Decision[R], RunEntry | None, list[EventRecord]]:
        """Take ``decide`` on the run and commit what it records: (the decision, the run's
        entry after it, the events committed).

        The decision runs under the run's lock on its current entry; facts it asks for are
        read by ``gather`` outside the lock, then it is taken again. Its changes are applied
        to the entry at once (a decision taken before their commit already sees them); if
        the commit fails the run is read again from the store, and on a sequence conflict
        the decision is taken again. A decision that writes nothing, taken on a copy held in
        memory, is taken again on a fresh read (the copy may be behind the store). ``new``: the
        run's id was just drawn at random, so the store holds nothing of it yet (not read).
        """
        facts = facts or Facts()
        fresh = False
        reuse: RunEntry | None = None
        for _ in range(MAX_ROUNDS):
            async with self.locks.hold(run_id):
                cached = self.authoritative and not fresh and run_id in self.entries
                if reuse is not None:
                    entry = reuse
                elif new and run_id not in self.entries:
                    entry = None
                else:
                    entry = await self.get(run_id, fresh=fresh)
                reuse = None
                verdict = decide(entry, facts, now())
                if isinstance(verdict, NeedFacts):
                    needed = verdict
                elif not verdict.changes and verdict.create is None and cached:
                    fresh = True
                    continue
                else:
                    records = self._apply(entry, verdict)
                    entry = self.entries.get(run_id, entry)
            if isinstance(verdict, NeedFacts):
                if gather is None:
                    raise StoreError(f"a decision on run {run_id} needs facts nobody reads")
                facts = await gather(needed, run_id, entry, facts)
                # A follower decides again on the copy it just read: the commit is a
                # compare-and-swap either way.
                reuse = entry if not self.authoritative and entry is not None else None
                continue
            if not records:
                return verdict, entry, records
            try:
                await self.writer.append(records)
            except SequenceError:
                await self.reload([run_id])
                fresh = False
                continue
            except BaseException:
                await self.reload([run_id])
                raise
            if verdict.create is not None and entry is not None:
                entry.committed = True
            self._published(records)
            return verdict, entry, records
        raise StoreError(f"run {run_id} kept changing under a decision; try again")

    def _apply(self, entry: RunEntry | None, verdict: Decision[Any]) -> list[EventRecord]:
        """The events of a decision, applied to the run's entry (a new one for a creation)."""
        records: list[EventRecord] = []
        mono = time.monotonic()
        if verdict.create is not None:
            record = created_record(verdict.create)
            created = record.typed()
            assert isinstance(created, FlowRunCreated)
            entry = entry_from_created(created)
            assert entry is not None
            entry.committed = False  # nothing may publish its request before the commit
            # read by the submission before it decided
            entry.crash_retries = self.crash_budgets.known(entry.deployment)
            self.entries[entry.run_id] = entry
            records.append(record)
        for change in verdict.changes:
            assert entry is not None, "a decision changed a run that does not exist"
            was_final = entry.state.is_terminal
            records.append(apply_change(entry, change, mono))
            self._after_state(entry, was_final, claimed=change.attempt is not None, now=mono)
        return records

    def _after_state(self, entry: RunEntry, was_final: bool, claimed: bool, now: float) -> None:
        """What a run's new state means beyond its entry: a claim's lease starts, a run that
        ended is forgotten by heartbeats and its limits free up."""
        if claimed:
            entry.extend_lease(now + self.lease_seconds)
        self.entries.refile(entry)
        if entry.state.is_terminal:
            self.leases.forget(entry.run_id)
            if not was_final:
                self.on_finished(entry)

    async def reload(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            async with self.locks.hold(run_id):
                self.entries.pop(run_id, None)
                await self._load(run_id)

    def renew(self, run_id: str, now: float) -> None:
        """A heartbeat from the run's holder: its lease lasts a full lease from ``now``."""
        self.leases.renew(self.entries.get(run_id), now)

    def add(self, entry: RunEntry) -> None:
        self.entries[entry.run_id] = entry

    # --- following the store -----------------------------------------------------------------

    def _follow(self, entry: RunEntry, record: EventRecord, now: float) -> None:
        """Apply one committed event of the run (the next in its stream) to its copy."""
        entry.seq = record.seq
        if record.type != EventType.FLOW_RUN_STATE:
            return
        event = record.typed()
        assert isinstance(event, FlowRunStateChanged)
        was_final = entry.state.is_terminal
        apply_state(entry, event, now)
        self._after_state(entry, was_final, claimed=event.attempt is not None, now=now)

    async def observe(self, records: list[EventRecord]) -> None:
        """Apply runs' events another orchestrator committed (the leader's ledger follows the
        store through them). A run whose copy is not exactly one event behind is read again.

        They come off the events stream, where anyone who may publish can put them: one is
        applied only when the store holds that very event (our own are skipped before that,
        being applied already)."""
        now = time.monotonic()
        behind: set[str] = set()
        for record in records:
            if not record.type.startswith("flow_run."):
                continue
            entry = self.entries.get(record.stream_id)
            if entry is None and record.type == EventType.FLOW_RUN_CREATED:
                if await self._stored(record):
                    await self._adopt(record)
                continue
            if entry is None or record.seq <= entry.seq:
                continue  # not a run of a deployment, or already applied (our own)
            if not await self._stored(record):
                continue
            if record.seq == entry.seq + 1 and record.stream_id not in behind:
                self._follow(entry, record, now)
                if entry.state is S.SCHEDULED and entry.state_name != "Late":
                    entry.mark_published()  # its writer publishes it
                    entry.foreign = True
            else:
                behind.add(record.stream_id)
        if behind:
            await self.reload(behind)

    async def _stored(self, record: EventRecord) -> bool:
        """Whether the store holds ``record`` itself (its id at its place in its stream)."""
        held = await self.store.read_stream(record.stream_id, after_seq=record.seq - 1)
        if held and held[0].seq == record.seq and held[0].id == record.id:
            return True
        log.warning("an event said to be recorded is not in the store: ignored",
                    run_id=record.stream_id, seq=record.seq, event_id=record.id)  # fmt: skip
        return False

    async def follow_stored(self, run_id: str) -> RunEntry | None:
        """Follow a run found in the store that this ledger does not hold (its writer died
        before it announced it), as another orchestrator's: read whole, its request taken as
        published (the janitor publishes it once more after a grace), ``on_foreign`` told."""
        async with self.locks.hold(run_id):
            if run_id in self.entries:
                return None  # learned of meanwhile, or being written by this orchestrator
            entry = await self._load(run_id)
        if entry is None:
            return None
        entry.foreign = True
        if entry.state is S.SCHEDULED:
            entry.mark_published()
        self.on_foreign(entry)
        return entry

    async def _adopt(self, record: EventRecord) -> None:
        created = record.typed()
        entry = fold([record]) if isinstance(created, FlowRunCreated) else None
        if entry is None:
            return
        entry.crash_retries = await self.crash_budgets.of(entry.deployment)
        entry.foreign = True
        entry.mark_published()  # its writer publishes it (``on_foreign`` decides otherwise)
        self.entries[entry.run_id] = entry
        self.on_foreign(entry)

    # --- the recorder's side -----------------------------------------------------------------

    async def admit(
        self, items: list[tuple[EventRecord, tuple[str, int] | None]]
    ) -> tuple[list[int], list[tuple[int, str]]]:
        """Which of the recorder's events may be appended: (admitted indexes, fenced ones).

        An agent's event (``fence`` = (run, attempt)) is admitted while that attempt is the run's
        open one (checked again on a fresh read before an event is refused). Admitted state
        events of a ledger run are applied to its entry at once, so a decision taken before
        their commit already sees them.
        """
        admitted: list[int] = []
        fenced: list[tuple[int, str]] = []
        now = time.monotonic()
        for index, (record, fence) in enumerate(items):
            if fence is not None:
                run_id, attempt = fence
                async with self.locks.hold(run_id):
                    entry = await self.get(run_id)
                    if entry is not None and not holds(entry, attempt):
                        entry = await self.get(run_id, fresh=True)
                if entry is None:
                    fenced.append((index, f"run {run_id} is not a run of a deployment"))
                    continue
                if not holds(entry, attempt):
                    why = f"attempt {attempt} of run {run_id} no longer holds it"
                    fenced.append((index, f"{why} (open: {entry.attempt if entry.open else '-'})"))
                    continue
            admitted.append(index)
            entry = self.entries.get(record.stream_id)
            if entry is not None and record.seq == entry.seq + 1:
                self._follow(entry, record, now)
                if entry.state is S.SCHEDULED and not entry.handed_over:
                    entry.mark_published()  # handed back: its agent naked the request
                # (a run handed over at submit had no request: the janitor publishes one)
        return admitted, fenced

    def queued_at(self, run_id: str) -> float | None:
        """When a run this copy holds was (re)queued (epoch seconds): its start latency."""
        entry = self.entries.get(run_id)
        return entry.queued_at if entry is not None else None

    def purge(self, now: float) -> None:
        """Drop runs finished long enough ago (a follower: runs read long enough ago), and what
        heartbeats said of runs no heartbeat has listed for as long."""
        self.leases.purge(now, KEEP_FINISHED)
        self.entries.drop_finished(now - KEEP_FINISHED, KEEP_FINISHED_AT_MOST)
        if not self.authoritative:  # a follower's copies are only those it read lately
            for run_id in [e.run_id for e in self.entries.values() if now - e.touched > KEEP_READ]:
                del self.entries[run_id]


__all__ = ["KEEP_FINISHED", "KEEP_FINISHED_AT_MOST", "UNFINISHED", "RunLedger", "now"]
