"""The store audit: every unfinished run of a deployment the store holds, the leader must follow,
or nothing ever publishes its request again, crashes it when its agent dies, or ends it.

The leader reads every unfinished run when it is elected and learns of the ones other
orchestrators make from their announcements on the events stream. An announcement can be lost:
its writer killed -9 between its commit and its publish, or acked by a leader deposed since
(a deposed leader's recorder serves until it learns it lost the lead). So with each queue audit
the leader lists the unfinished runs created in the last ``LOOKBACK`` seconds (an index scan:
the runs queued or under way, not the history) and follows any it does not hold, as another
orchestrator's run: a Scheduled one has its request published once more by the janitor (a
claim refuses a copy), a claimed one keeps a lease its agent's heartbeats renew.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import structlog

from flowbus.agents.ledger import UNFINISHED, RunLedger
from flowbus.engine.clock import canonical

log = structlog.get_logger("flowbus.orchestrator")

#: How far back the audit looks: a run is committed within this of the time its writer stamped
#: on it (the hosts' clocks agree far better than this). Older runs were read at the election.
LOOKBACK = 300.0


async def follow_unknown_runs(ledger: RunLedger, wall: float | None = None) -> list[str]:
    """Follow the unfinished runs created in the last ``LOOKBACK`` seconds before epoch ``wall``
    (now by default) that ``ledger`` does not hold; return their ids."""
    since = canonical(datetime.fromtimestamp((wall or time.time()) - LOOKBACK, UTC))
    found: list[str] = []
    for state_type in UNFINISHED:
        runs = await ledger.store.list_flow_runs(state=state_type.value, created_after=since,
                                                 limit=10**9)  # fmt: skip
        for run in runs:
            if not run.deployment or run.id in ledger.entries:
                continue
            entry = await ledger.follow_stored(run.id)
            if entry is not None:
                log.warning("a run only the store knew of is followed now", run_id=run.id,
                            state=entry.state_name)  # fmt: skip
                found.append(run.id)
    return found


__all__ = ["LOOKBACK", "follow_unknown_runs"]
