"""Event triggers' counts (pure): threshold within a window, per for_each group, after."""

from __future__ import annotations

from typing import Any

from flowbus.engine.automations import (
    AbsenceTrigger,
    Automation,
    EventPattern,
    EventTrigger,
    RunDeployment,
)
from flowbus.engine.trigger_counts import TriggerCounts, wants_run_states, wants_type


def automation(**trigger: Any) -> Automation:
    return Automation(name="a", trigger=EventTrigger(**trigger),
                      actions=[RunDeployment(deployment="d/x")])  # fmt: skip


def event(kind: str, resource: str = "user.1") -> dict[str, Any]:
    return {"id": "e", "type": kind, "resource": resource, "labels": {}}


def test_threshold_within_a_window_per_group() -> None:
    made = automation(match=EventPattern(type="login.failed"), threshold=3, within=60,
                      for_each=["resource"])  # fmt: skip
    assert isinstance(made.trigger, EventTrigger)
    counts = TriggerCounts()
    seen = [("u1", 0), ("u2", 1), ("u1", 2), ("u1", 70), ("u1", 71), ("u1", 72)]
    fires = [counts.fires("a", made.trigger, event("login.failed", r), t) for r, t in seen]
    # u1 at 0 and 2 are too far from 70: the third within 60 s is at 72.
    assert fires == [False, False, False, False, False, True]


def test_after_arms_a_group_and_firing_disarms_it() -> None:
    made = automation(match=EventPattern(type="order.complete"),
                      after=EventPattern(type="order.created"), for_each=["resource"])  # fmt: skip
    counts = TriggerCounts()
    assert not counts.counts(made, event("order.complete"))  # not armed yet
    assert not counts.counts(made, event("order.created"))  # arms, does not count itself
    assert not counts.counts(made, event("order.complete", "user.2"))  # another group
    assert counts.counts(made, event("order.complete"))
    assert isinstance(made.trigger, EventTrigger)
    assert counts.fires("a", made.trigger, event("order.complete"), 0)
    assert not counts.counts(made, event("order.complete"))  # waits for the next created
    assert wants_type(made, "order.created") and not wants_type(made, "order.shipped")


def test_run_states_are_wanted_by_a_pattern_that_could_match_one() -> None:
    def wants(**trigger: Any) -> bool:
        return wants_run_states(automation(**trigger))

    assert wants(match=EventPattern(type="flow-run.Failed"))
    assert wants(match=EventPattern())  # any type: "*"
    assert wants(match=EventPattern(type=["file.uploaded", "flow-*"]))
    assert wants(match=EventPattern(type="file.uploaded"), after=EventPattern(type="flow-run.*"))
    assert not wants(match=EventPattern(type=["file.uploaded", "login.failed"]))
    absent = AbsenceTrigger(match=EventPattern(type="flow-run.Completed"), cron="0 7 * * *",
                            within=3600)  # fmt: skip
    assert wants_run_states(Automation(name="late", trigger=absent,
                                       actions=[RunDeployment(deployment="d/x")]))  # fmt: skip
