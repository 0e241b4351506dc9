"""The orchestrator's ledger: every run of a deployment that is not over, and every write to
their streams.

The store is the truth; the ledger is an orchestrator's copy of what it needs to arbitrate
(state, stream head, claim attempt, lease). Each decision is compare-and-swap: it is taken under
the run's own lock on the run's current version (its stream head), its events are appended at
``head + 1``, and a store that already holds another event there (``SequenceError``) sends the
decision round again on the reloaded run. Decisions about many runs share one transaction
(``BatchWriter``); decisions about different runs never wait for each other.

Several orchestrators write the same runs, so a copy can be behind the store. The leader's
ledger holds every unfinished run (loaded when it is elected) and follows what the others
commit (``observe``); a follower's reads each run from the store before deciding on it. A
decision that writes nothing (a refusal, "nothing to do") was taken on a copy that may be behind
the store, so it is taken again on a fresh read before it is answered: no claim is refused, and
no agent told it lost a run, because of a stale copy.

Fencing: a claim opens attempt ``n`` of a run; events an agent publishes carry the attempt, and
the recorder admits them only while attempt ``n`` is the run's open attempt. A crash, a fallback
cancel, a hand-back or the next claim closes it (the event says so: ``closes_attempt``), so a
zombie agent's late events are refused whatever its JetStream acks did.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import structlog

from flowbus.engine.errors import SequenceError, StoreError
from flowbus.engine.records import EventRecord, make_record, state_dict
from flowbus.engine.states import State, StateType
from flowbus.engine.store import EventStore
from flowbus.engine.store.batch_writer import BatchWriter
from flowbus.engine.store.views import StoredEvent
from flowbus.engine.transitions import decide

log = structlog.get_logger("flowbus.orchestrator")

S = StateType
#: States in which a claimed run is held by its agent (and its lease must be renewed).
#: States in which an agent holds the run (a Paused run is held by nobody: it waits to be
#: resumed, and no lease runs out meanwhile).
HELD = frozenset({S.PENDING, S.RUNNING, S.CANCELLING})
#: A finished run stays in memory this long (late events of its attempt are still admitted).
KEEP_FINISHED = 600.0
#: A follower keeps a run it read this long (it reads the store again before each decision).
KEEP_READ = 30.0

T = TypeVar("T")


@dataclass(slots=True)
class RunEntry:
    """What the orchestrator knows about one run of a deployment."""

    run_id: str
    name: str
    deployment: str
    queue: str
    state: StateType
    state_name: str
    seq: int
    parameters: dict[str, Any]
    tags: list[str]
    #: When the run was (re)queued, epoch seconds: the clock for Late.
    queued_at: float
    #: The sequence number of the event that (re)queued it: its run request's message id.
    queued_seq: int = 1
    #: Whether that run request is known to be in the queue (the outbox flag).
    published: bool = False
    attempt: int = 0
    agent: str | None = None
    #: Whether events of ``attempt`` are admitted (closed by a crash or a fallback cancel).
    open: bool = False
    lease_until: float = 0.0
    #: Its deployment's crash-recovery budget (``crash_retries``).
    crash_retries: int = 0
    crashes: int = 0
    finished_at: float | None = None
    #: Epoch seconds before which its request is not published (a schedule's slot); 0: at once.
    due_at: float = 0.0
    #: The deployment schedule that made it, if one did.
    schedule_id: int | None = None
    #: Inputs of its resumed pauses, by pause key (the agent that runs it again gets them).
    resumes: dict[str, Any] = field(default_factory=dict)
    #: While Paused: which pause, until when (epoch seconds), and the input it waits for.
    pause_key: str | None = None
    pause_deadline: float = 0.0
    pause_input_schema: dict[str, Any] | None = None
    #: When this copy was read from the store or last changed here (monotonic).
    touched: float = field(default_factory=time.monotonic)
    #: Queued by another orchestrator, which published its request (or died first): the
    #: leader publishes it once more if it is still unclaimed after a grace period.
    foreign: bool = False
    #: False while the event that created it is not yet committed: nothing may publish its
    #: request (another orchestrator, reading the store, would not find the run).
    committed: bool = True

    @property
    def held(self) -> bool:
        return self.open and self.agent is not None and self.state in HELD

    def lease_expired(self, now: float) -> bool:
        return self.held and self.lease_until < now


class Refused(Exception):
    """A decision that does not apply to the run as it is now (the reply says why)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def fold(events: Iterable[StoredEvent | EventRecord]) -> RunEntry | None:
    """Rebuild a run's entry from its stream; None for a run that is not a deployment's."""
    entry: RunEntry | None = None
    for event in events:
        data = event.data
        if event.type == "flow_run.created":
            if not data.get("deployment") or not data.get("queue"):
                return None
            state = data["state"]
            due = _epoch(data["scheduled_time"]) if data.get("scheduled_time") else 0.0
            entry = RunEntry(
                run_id=event.stream_id,
                name=data["name"],
                deployment=data["deployment"],
                queue=data["queue"],
                state=S(state["type"]),
                state_name=state["name"],
                seq=event.seq,
                parameters=data.get("parameters", {}),
                tags=data.get("tags", []),
                queued_at=due or _epoch(state["timestamp"]),
                queued_seq=event.seq,
                due_at=due,
                schedule_id=data.get("schedule_id"),
            )
        elif entry is not None:
            entry.seq = event.seq
            if event.type == "flow_run.state":
                _apply_state(entry, event.seq, data, time.monotonic())
    return entry


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


def _apply_state(entry: RunEntry, seq: int, data: dict[str, Any], now: float) -> None:
    state = data["state"]
    entry.state = S(state["type"])
    entry.state_name = state["name"]
    if data.get("attempt") is not None:  # a claim: a new attempt opens, the old one is fenced
        entry.attempt = data["attempt"]
        entry.agent = data.get("agent")
        entry.open = True
    if data.get("retried"):  # queued again on request: its crash budget starts over
        entry.crashes = 0
    if entry.state is S.CRASHED:
        entry.crashes += 1
    if entry.state is S.CRASHED or data.get("closes_attempt") is not None:
        entry.open = False  # fenced: the attempt's late events are refused
    if entry.state is S.PAUSED:
        entry.pause_key = data.get("pause_key")
        timeout_at = data.get("pause_timeout_at")
        entry.pause_deadline = _epoch(timeout_at) if timeout_at else float("inf")
        entry.pause_input_schema = data.get("input_schema")
    if "resume_input" in data and data.get("pause_key"):  # the resume of a pause
        entry.resumes[data["pause_key"]] = data["resume_input"]
    if entry.state is S.SCHEDULED and entry.state_name != "Late":
        entry.queued_seq = seq
        entry.queued_at = _epoch(state["timestamp"])
    entry.finished_at = now if entry.state.is_terminal else None


class RunLocks:
    """One asyncio lock per run, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, run_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(run_id, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[run_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[run_id]
            if users == 1:
                del self._locks[run_id]
            else:
                self._locks[run_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class RunLedger:
    """Arbitrates claims, leases, cancels and crashes; admits agents' events by attempt."""

    def __init__(
        self,
        store: EventStore,
        lease_seconds: float = 30.0,
        published: Callable[[list[EventRecord]], None] | None = None,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.entries: dict[str, RunEntry] = {}
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
        self._crash_retries_of: dict[str, int] = {}
        #: run -> (agent, attempt, when) from the last heartbeat that listed it: a copy read
        #: or learned later (another orchestrator's claim) keeps the lease that heartbeat gave.
        self.heard: dict[str, tuple[str, int, float]] = {}

    # --- loading ---------------------------------------------------------------------------

    async def load(self) -> int:
        """Read every unfinished run of a deployment from the store (replacing what was held);
        return how many."""
        self.entries.clear()
        for state_type in (S.SCHEDULED, S.PENDING, S.RUNNING, S.PAUSED, S.CANCELLING):
            for run in await self.store.list_flow_runs(state=state_type.value, limit=10**9):
                if run.deployment and run.id not in self.entries:
                    async with self.locks.hold(run.id):
                        await self._load(run.id)
        self.renew_all()
        return len(self.entries)

    def renew_all(self) -> None:
        """Give every loaded run a full lease from now: a starting orchestrator has heard no
        heartbeat yet, and must not take the time it spent starting out of the agents' leases."""
        until = time.monotonic() + self.lease_seconds
        for entry in self.entries.values():
            entry.lease_until = max(entry.lease_until, until)

    async def _load(self, run_id: str) -> RunEntry | None:
        previous = self.entries.get(run_id)
        entry = fold(await self.store.read_stream(run_id))
        if entry is not None:
            entry.crash_retries = await self.crash_retries_of(entry.deployment)
            entry.lease_until = time.monotonic() + self.lease_seconds
            if previous is not None and previous.attempt == entry.attempt:
                # The same holder: the lease its heartbeats renewed is kept (a read again is
                # no heartbeat), as is what is known of the request's publication.
                entry.lease_until = previous.lease_until
                entry.published = previous.published and previous.queued_seq == entry.queued_seq
                entry.foreign = previous.foreign and entry.published
            self.renew_heard(entry)
            self.entries[run_id] = entry
        else:
            self.entries.pop(run_id, None)
        return entry

    async def get(self, run_id: str, fresh: bool = False) -> RunEntry | None:
        """The run's entry (call under the run's lock): the copy in memory when this ledger is
        authoritative and ``fresh`` is not asked for, else read from the store."""
        entry = self.entries.get(run_id)
        if entry is None or fresh or not self.authoritative:
            entry = await self._load(run_id)
        return entry

    async def crash_retries_of(self, deployment: str) -> int:
        """A deployment's crash-recovery budget: how often a run of it whose agent or process
        died is queued again before it ends Crashed."""
        budget = self._crash_retries_of.get(deployment)
        if budget is None:
            from flowbus.engine.deployments import DEFAULT_CRASH_RETRIES, deployment_id

            events = await self.store.read_stream(deployment_id(deployment))
            saved = events[-1].data.get("crash_retries") if events else None
            budget = DEFAULT_CRASH_RETRIES if saved is None else int(saved)
            self._crash_retries_of[deployment] = budget
        return budget

    def forget_deployment(self, deployment: str) -> None:
        self._crash_retries_of.pop(deployment, None)

    # --- decisions ---------------------------------------------------------------------------

    async def transact(
        self, run_id: str, decision: Callable[[RunEntry | None], Awaitable[tuple[T, list[Any]]]]
    ) -> T:
        """Take ``decision`` on the run's current entry and commit the events it returns.

        ``decision`` runs under the run's lock and may change the entry (optimistically); if the
        commit fails the entry is reloaded from the store, and on a sequence conflict the
        decision is taken again on the reloaded run. A decision that writes nothing, taken on
        a copy held in memory, is taken again on a fresh read (the copy may be behind).
        """
        fresh = False
        for _ in range(10):
            async with self.locks.hold(run_id):
                cached = self.authoritative and not fresh and run_id in self.entries
                entry = await self.get(run_id, fresh=fresh)
                result, records = await decision(entry)
                if not records and cached:
                    fresh = True
                    continue
            if not records:
                return result
            try:
                await self.writer.append(records)
            except SequenceError:
                await self.reload([run_id])
                fresh = False
                continue
            except BaseException:
                await self.reload([run_id])
                raise
            self._published(records)
            return result
        raise StoreError(f"run {run_id} kept changing under a decision; try again")

    async def reload(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            async with self.locks.hold(run_id):
                self.entries.pop(run_id, None)
                await self._load(run_id)

    def record_state(
        self, entry: RunEntry, state: State, close: bool = False, **fields: Any
    ) -> EventRecord:
        """The event moving ``entry`` to ``state`` (checked by the rule table); applied to it.
        ``close``: the event also fences the run's open attempt (``closes_attempt`` in its data,
        so a run folded from the store knows it too)."""
        if close:
            fields["closes_attempt"] = entry.attempt
        verdict = decide(entry.state, state.type)
        if not verdict:
            raise Refused("illegal", f"run {entry.run_id}: {verdict.reason}")
        data = {"state": state_dict(state), "result": None, **fields}
        record = make_record(
            entry.run_id, entry.seq + 1, "flow_run.state", data, state.timestamp_iso
        )
        entry.seq += 1
        entry.touched = time.monotonic()
        self._apply(entry, entry.seq, data, time.monotonic())
        if fields.get("attempt") is not None:
            entry.lease_until = time.monotonic() + self.lease_seconds
        return record

    def renew_heard(self, entry: RunEntry) -> None:
        """Extend the entry's lease to what the last heartbeat listing its attempt gave."""
        heard = self.heard.get(entry.run_id)
        if heard is not None and entry.agent == heard[0] and entry.attempt == heard[1]:
            entry.lease_until = max(entry.lease_until, heard[2] + self.lease_seconds)

    def _apply(self, entry: RunEntry, seq: int, data: dict[str, Any], now: float) -> None:
        was_final = entry.state.is_terminal
        _apply_state(entry, seq, data, now)
        if data.get("attempt") is not None:
            entry.lease_until = now + self.lease_seconds
        if entry.state.is_terminal:
            self.heard.pop(entry.run_id, None)
        if entry.state.is_terminal and not was_final:
            self.on_finished(entry)

    def add(self, entry: RunEntry) -> None:
        self.entries[entry.run_id] = entry

    # --- following the store -----------------------------------------------------------------

    async def observe(self, records: list[EventRecord]) -> None:
        """Apply runs' events another orchestrator committed (the leader's ledger follows the
        store through them). A run whose copy is not exactly one event behind is read again."""
        now = time.monotonic()
        behind: set[str] = set()
        for record in records:
            if not record.type.startswith("flow_run."):
                continue
            entry = self.entries.get(record.stream_id)
            if entry is None and record.type == "flow_run.created":
                entry = fold([record])
                if entry is not None:
                    entry.crash_retries = await self.crash_retries_of(entry.deployment)
                    entry.foreign = True
                    self.entries[entry.run_id] = entry
                    self.on_foreign(entry)
                continue
            if entry is None or record.seq <= entry.seq:
                continue  # not a run of a deployment, or already applied (our own)
            if record.seq == entry.seq + 1 and record.stream_id not in behind:
                entry.seq = record.seq
                if record.type == "flow_run.state":
                    self._apply(entry, record.seq, record.data, now)
                    if entry.state is S.SCHEDULED and entry.state_name != "Late":
                        entry.published, entry.foreign = True, True  # its writer publishes it
            else:
                behind.add(record.stream_id)
        if behind:
            await self.reload(behind)

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
                    if entry is not None and not _holds(entry, attempt):
                        entry = await self.get(run_id, fresh=True)
                if entry is None:
                    fenced.append((index, f"run {run_id} is not a run of a deployment"))
                    continue
                if not _holds(entry, attempt):
                    why = f"attempt {attempt} of run {run_id} no longer holds it"
                    fenced.append((index, f"{why} (open: {entry.attempt if entry.open else '-'})"))
                    continue
            admitted.append(index)
            entry = self.entries.get(record.stream_id)
            if entry is not None and record.seq == entry.seq + 1:
                entry.seq = record.seq
                if record.type == "flow_run.state":
                    self._apply(entry, record.seq, record.data, now)
                    if entry.state is S.SCHEDULED:  # handed back: its request was naked
                        entry.published = True
        return admitted, fenced

    def purge(self, now: float) -> None:
        """Drop runs finished long enough ago (a follower: runs read long enough ago), and what
        heartbeats said of runs no heartbeat has listed for as long."""
        for run_id in [run for run, (_, _, heard_at) in self.heard.items()
                       if now - heard_at > KEEP_FINISHED]:  # fmt: skip
            del self.heard[run_id]
        for run_id in [
            e.run_id
            for e in self.entries.values()
            if (e.finished_at is not None and now - e.finished_at > KEEP_FINISHED)
            or (not self.authoritative and now - e.touched > KEEP_READ)
        ]:
            del self.entries[run_id]


def _holds(entry: RunEntry, attempt: int) -> bool:
    return entry.open and entry.attempt == attempt
