"""The orchestrator's answers that only read: the replay table of a run (``flowbus.agent.replay``),
whether a run is recorded yet (``flowbus.api.recorded``), a run's end once it is recorded
(``flowbus.api.wait``) and the deployments
(``flowbus.api.deployments``). Any orchestrator answers alike: they read the store."""

from __future__ import annotations

import time
from typing import Any

import orjson

from flowbus.agents.final_waits import FinalWaits, settled
from flowbus.agents.recorded_waits import RecordedWaits
from flowbus.broker import protocol as p
from flowbus.engine.replay import replay_entries, subflow_entry
from flowbus.engine.states import StateType
from flowbus.engine.store import EventStore

#: How much of replay entries one reply carries (NATS refuses messages over 1 MiB by default).
REPLAY_PAGE_BYTES = 512 * 1024


class Reads:
    """Answers the requests that read the store."""

    def __init__(
        self, store: EventStore, recorded_waits: RecordedWaits, final_waits: FinalWaits
    ) -> None:
        self.store = store
        self.recorded_waits = recorded_waits
        self.final_waits = final_waits

    async def replay(self, request: p.ReplayRequest) -> p.ReplayReply:
        """The task runs earlier attempts of a run completed, a page at a time."""
        entries = replay_entries(await self.store.read_stream(request.run_id))
        for child in await self.store.list_flow_runs(parent_run_id=request.run_id, limit=10**6):
            if child.state_type == StateType.COMPLETED:  # a subflow its earlier attempts completed
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
        return p.ReplayReply(entries=page, more=more)

    async def recorded(self, request: p.RecordedRequest) -> p.RecordedReply:
        """Answer once the store holds the run's events up to ``request.seq``: a client that
        saw a final state on the events stream reads the same from the store after this."""
        head = await self.recorded_waits.wait(request.run_id, request.seq, request.wait)
        recorded = head >= request.seq
        stored_id = None
        if recorded and request.event_id is not None:
            held = await self.store.read_stream(request.run_id, after_seq=request.seq - 1)
            stored_id = held[0].id if held else None
        return p.RecordedReply(head=head, recorded=recorded, event_id=stored_id)

    async def wait(self, request: p.WaitRequest) -> p.WaitReply | p.ErrorReply:
        """Answer once the store holds the run's final state (or after ``request.wait``
        seconds, with its state so far)."""
        end = await self.final_waits.wait(request.run_id, request.wait)
        if end is None:
            return p.error("not_found", f"no run {request.run_id}")
        return p.WaitReply(final=settled(end, time.time(), self.final_waits.settle),
                           state_type=end.state_type, state_name=end.state_name,
                           message=end.message, result=end.result)  # fmt: skip

    async def list_deployments(self, _: None) -> p.DeploymentList:
        """Every deployment, with its parameters' JSON schema."""
        deployments = await self.store.list_deployments()
        return p.DeploymentList(deployments=[d.to_dict() for d in deployments])


__all__ = ["Reads"]
