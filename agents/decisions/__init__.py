"""Every orchestrator decision as a pure function: facts in, a ``Decision`` out (no I/O, no
lock, no clock of its own), table-tested without NATS or a store (tests/unit/test_decisions*).

- ``model``: the vocabulary (``Decision``, ``Change``, the effects, ``Facts``, ``NeedFacts``).
- ``claims``: claims, hand-backs, heartbeats, lease expiry and the crash budget.
- ``controls``: cancel, resume, retry, a pause's timeout, Late.
- ``releases``: submissions, and when a queued run's request is published.
- ``sweeps``: the leader's janitor and queue audit.
- ``agent``: the agent's ack, nak or dead letter of a run request.
"""

from flowbus.agents.decisions.claims import (
    ahead_of_store,
    awaits_start,
    claim_refusal,
    crash,
    decide_claim,
    decide_expiry,
    decide_heartbeat,
    decide_release,
    grant_again,
)
from flowbus.agents.decisions.controls import (
    decide_cancel,
    decide_cancel_unstarted,
    decide_cancel_without_agent,
    decide_mark_late,
    decide_pause_expiry,
    decide_resume,
    decide_retry,
)
from flowbus.agents.decisions.model import (
    UNREAD,
    ArmTimer,
    AskAgentToCancel,
    Change,
    Decision,
    Effect,
    Facts,
    NeedFacts,
    NewRun,
    NoteCrash,
    Now,
    Publish,
    Release,
    RenewLease,
    StreamHead,
)
from flowbus.agents.decisions.releases import (
    adopt,
    after_submit,
    decide_submit,
    released_by_leader,
)
from flowbus.agents.decisions.sweeps import Sweep, audit_due, lost_requests, sweep_actions
from flowbus.agents.run_entry import held_by

__all__ = [
    "UNREAD",
    "ArmTimer",
    "AskAgentToCancel",
    "Change",
    "Decision",
    "Effect",
    "Facts",
    "NeedFacts",
    "NewRun",
    "NoteCrash",
    "Now",
    "Publish",
    "Release",
    "RenewLease",
    "StreamHead",
    "Sweep",
    "adopt",
    "after_submit",
    "ahead_of_store",
    "audit_due",
    "awaits_start",
    "claim_refusal",
    "crash",
    "decide_cancel",
    "decide_cancel_unstarted",
    "decide_cancel_without_agent",
    "decide_claim",
    "decide_expiry",
    "decide_heartbeat",
    "decide_mark_late",
    "decide_pause_expiry",
    "decide_release",
    "decide_resume",
    "decide_retry",
    "decide_submit",
    "grant_again",
    "held_by",
    "lost_requests",
    "released_by_leader",
    "sweep_actions",
]
