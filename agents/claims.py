"""Claims, heartbeats and leases: an agent claims a run (a new attempt opens, fenced by its
number), renews its lease by heartbeat, hands it back or reports its process dead; a run whose
lease runs out is Crashed (and queued again within its deployment's crash budget)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import structlog

from flowbus.agents import telemetry
from flowbus.agents.decisions import awaits_start, claim_refusal, grant_again, held_by
from flowbus.agents.ledger import RunEntry
from flowbus.agents.orchestrator_core import AgentSeen, OrchestratorCore
from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.engine.faults import crash_point
from flowbus.engine.records import EventRecord
from flowbus.engine.replay import replay_entries, subflow_entry
from flowbus.engine.states import (
    AwaitingRetry,
    Cancelled,
    Cancelling,
    Crashed,
    Pending,
    Scheduled,
    StateType,
)
from flowbus.engine.store import DeploymentView
from flowbus.waiting import last_state

log = structlog.get_logger("flowbus.orchestrator")
S = StateType


#: How much of replay entries one reply carries (NATS refuses messages over 1 MiB by default).
REPLAY_PAGE_BYTES = 512 * 1024


class Claims(OrchestratorCore):
    """Claim, heartbeat, release; crash a run whose holder is gone."""

    async def replay(self, request: p.ReplayRequest) -> bytes:
        """The task runs earlier attempts of a run completed (read from the store: any
        orchestrator answers alike), a page at a time."""
        entries = replay_entries(await self.store.read_stream(request.run_id))
        for child in await self.store.list_flow_runs(parent_run_id=request.run_id, limit=10**6):
            if child.state_type == S.COMPLETED:  # a subflow its earlier attempts completed
                found = subflow_entry(child.id, await self.store.read_stream(child.id))
                if found is not None:
                    entries.append(found)
        page: list[dict[str, Any]] = []
        size = 0
        for entry in entries[request.offset :]:
            item = entry.to_dict()
            size += len(orjson.dumps(item))
            if page and size > REPLAY_PAGE_BYTES:
                break
            page.append(item)
        more = request.offset + len(page) < len(entries)
        return p.ReplayReply(entries=page, more=more).dump()

    async def claim(self, request: p.ClaimRequest) -> bytes:
        async def decide(entry: RunEntry | None) -> tuple[bytes, list[EventRecord]]:
            if entry is None:
                unknown = p.ClaimRefusal(reason="unknown", message="no such run of a deployment")
                return unknown.dump(), []
            records: list[EventRecord] = []
            unstarted = False
            if entry.lease_expired(time.monotonic()):
                records += self._crash(entry, f"agent {entry.agent} stopped renewing its lease")
            elif awaits_start(entry):
                unstarted = not await self._started(entry)
                if unstarted and grant_again(entry, request.agent):
                    deployment = await self._deployment(entry.deployment)
                    if deployment is not None:  # the claim's Pending is the run's last event
                        return self._grant(entry, entry.attempt, entry.seq, deployment).dump(), []
            refusal = claim_refusal(entry, unstarted)
            if refusal is not None:
                return refusal.dump(), records
            deployment = await self._deployment(entry.deployment)
            if deployment is None:
                gone = p.ClaimRefusal(reason="unknown", message="its deployment is gone")
                return gone.dump(), records
            attempt = entry.attempt + 1
            record = self.ledger.record_state(
                entry, Pending(), agent=request.agent, attempt=attempt
            )
            records.append(record)
            return self._grant(entry, attempt, record.seq, deployment).dump(), records

        reply = await self.ledger.transact(request.run_id, decide)
        if not reply.startswith(b'{"ok":false'):
            crash_point("after-claim-write")  # recorded, not answered: the lost-reply test
        await self._dispatch_if_queued_again(request.run_id)  # its holder's lease had expired
        return reply

    async def _started(self, entry: RunEntry) -> bool:
        """Whether the events stream holds a state of the run after its claim: the attempt has
        started (perhaps ended), though the store may not show it yet. Unreadable: started."""
        try:
            latest = await last_state(self.js, entry.run_id)
        except Exception:  # the stream cannot say: never grant a run again on a guess
            return True
        return latest is not None and latest.seq > entry.seq

    def _grant(
        self, entry: RunEntry, attempt: int, seq: int, deployment: DeploymentView
    ) -> p.ClaimGrant:
        return p.ClaimGrant(
            run_id=entry.run_id,
            attempt=attempt,
            seq=seq,
            name=entry.name,
            flow_name=deployment.flow_name,
            deployment=deployment.name,
            entrypoint=deployment.entrypoint,
            working_dir=deployment.working_dir,
            parameters=entry.parameters,
            tags=entry.tags,
            lease_seconds=self.settings.lease_seconds,
            resumes=entry.resumes,
        )

    async def heartbeat(self, beat: p.Heartbeat) -> bytes:
        """Renew the leases of the runs the agent holds; the leader answers with those it no
        longer holds. Nothing here waits for the store: a run this orchestrator's copy does not
        show held by that attempt (another's claim it has not followed yet, say) is read again
        in the background, and named lost in a later answer only if the store agrees."""
        now = time.monotonic()
        self.agents[beat.agent] = AgentSeen(beat, now)
        if self.slots is not None:  # after an election, earlier grants count again
            self.slots.adopt(beat.agent, beat.slots)
        leading = self.leadership.leading
        lost = []
        for held in beat.runs:
            self.ledger.heard[held.run_id] = (beat.agent, held.attempt, now)
            entry = self.ledger.entries.get(held.run_id)
            if entry is not None and held_by(entry, beat.agent, held.attempt):
                entry.lease_until = now + self.settings.lease_seconds
            elif (beat.agent, held.run_id, held.attempt) in self._lost:
                self._lost.discard((beat.agent, held.run_id, held.attempt))
                lost.append(held.run_id)
            elif leading and held.run_id not in self._checking:
                self._checking.add(held.run_id)
                self.background.spawn(self._check_holder(beat.agent, held))
        if not leading:
            return b""  # the leader answers
        return p.HeartbeatReply(lost=lost, lease_seconds=self.settings.lease_seconds).dump()

    async def _check_holder(self, agent: str, held: p.HeldRun) -> None:
        """Read a run the leader's copy does not show held by ``agent``'s attempt."""
        try:
            async with self.ledger.locks.hold(held.run_id):
                entry = await self.ledger.get(held.run_id, fresh=True)
            if entry is None or not held_by(entry, agent, held.attempt):
                self._lost.add((agent, held.run_id, held.attempt))
        except Exception as exc:  # the next heartbeat asks again
            log.warning("could not read a heartbeat's run", run_id=held.run_id, error=repr(exc))
        finally:
            self._checking.discard(held.run_id)

    async def release(self, request: p.ReleaseRequest) -> bytes:
        async def decide(entry: RunEntry | None) -> tuple[bytes, list[EventRecord]]:
            if (
                entry is None
                or not entry.open
                or entry.attempt != request.attempt
                or entry.agent != request.agent
                or entry.state.is_terminal
            ):
                return p.Ok().dump(), []  # no longer that agent's: nothing to give up
            if request.outcome == "crashed":
                return p.Ok().dump(), self._crash(entry, request.message or "its process died")
            if request.outcome == "cancelled":
                message = request.message or "cancelled on request"
                records = []
                if entry.state is not S.CANCELLING:
                    records.append(self.ledger.record_state(entry, Cancelling(message=message)))
                cancelled = Cancelled(message=message)
                records.append(self.ledger.record_state(entry, cancelled, close=True))
                return p.Ok().dump(), records
            message = request.message or f"handed back by agent {request.agent}"
            record = self.ledger.record_state(entry, Scheduled(message=message), close=True)
            entry.published = True  # the agent naks the request: it comes back by itself
            return p.Ok().dump(), [record]

        reply = await self.ledger.transact(request.run_id, decide)
        await self._dispatch_if_queued_again(request.run_id)
        return reply

    def _crash(self, entry: RunEntry, message: str, **fields: Any) -> list[EventRecord]:
        """Fence the run's attempt and end it Crashed; queue it again if retries are left."""
        if entry.state is S.CANCELLING:  # it was being cancelled when its agent died
            cancelled = Cancelled(message=message)
            return [self.ledger.record_state(entry, cancelled, close=True, **fields)]
        records = [self.ledger.record_state(entry, Crashed(message=message), close=True, **fields)]
        if entry.crashes <= entry.crash_retries:
            budget = entry.crash_retries
            again = f"{message}; recovering: queued again (crash {entry.crashes} of {budget})"
            records.append(self.ledger.record_state(entry, AwaitingRetry(message=again)))
            entry.published = False
        self._count("crashed")
        log.warning("run crashed", run_id=entry.run_id, reason=message, requeued=len(records) > 1)
        return records

    async def list_agents(self, _: None) -> bytes:
        now = time.monotonic()
        agents = [
            p.AgentInfo(
                name=name,
                queues=seen.heartbeat.queues,
                concurrency=seen.heartbeat.concurrency,
                runs=seen.heartbeat.runs,
                started=seen.heartbeat.started,
                last_heartbeat=seen.last_seen_iso,
                hostname=seen.heartbeat.hostname,
                pid=seen.heartbeat.pid,
                alive=now - seen.last_seen < self.settings.lease_seconds,
                abandoned=seen.heartbeat.abandoned,
            )
            for name, seen in sorted(self.agents.items())
        ]
        return p.AgentList(agents=agents).dump()

    def _run_finished(self, entry: RunEntry) -> None:
        """A run reached a final state: what it held comes back, at once."""
        if self.slots is not None:
            self.slots.reclaim(lambda h: h.run_id == entry.run_id, "its flow run ended")
        if self.leadership.leading:
            self._wake_deployment(entry.deployment)

    async def _expire(self, run_id: str) -> None:
        async def decide(entry: RunEntry | None) -> tuple[bool, list[EventRecord]]:
            if entry is not None:
                self.ledger.renew_heard(entry)
            if entry is None or not entry.lease_expired(time.monotonic()):
                return False, []
            if await self._ahead_of_store(entry):
                # Its agent published newer states than the store holds (the recorder is
                # behind, e.g. just after an election): its agent is not dead, it finished
                # or moved on. Wait for the recorder instead of crashing a finished run.
                entry.lease_until = time.monotonic() + self.settings.lease_seconds
                return False, []
            message = f"agent {entry.agent} stopped renewing its lease"
            return True, self._crash(entry, message, **self._term())

        if await self.ledger.transact(run_id, decide):
            telemetry.LEASE_EXPIRIES.inc()
        await self._dispatch_if_queued_again(run_id)

    async def _ahead_of_store(self, entry: RunEntry) -> bool:
        """Whether the events stream holds a state of the run's open attempt that the store
        does not have yet."""
        subject = subjects.event_subject(entry.run_id, "flow_run.state")
        try:
            last = await self.js.get_last_msg(subjects.EVENTS_STREAM, subject)
            attempt = int((last.headers or {}).get(subjects.ATTEMPT_HEADER, -1))
            seq = int(orjson.loads(last.data or b"{}").get("seq", 0))
        except Exception:  # none there, or NATS away: the store's view stands
            return False
        return attempt == entry.attempt and seq > entry.seq
