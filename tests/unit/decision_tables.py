"""What the decision table tests share: runs in every state, the time, and a check that what a
decision records is a valid event (built the way the ledger builds it, read back the way any
subscriber reads it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowbus.agents.decisions.model import Change, Decision, Facts, NeedFacts, Now
from flowbus.agents.run_entry import RunEntry, after, apply_change
from flowbus.engine.events import FlowRunStateChanged, decode_event
from flowbus.engine.states import StateType
from flowbus.engine.store import DeploymentView

S = StateType
NOW = Now(1000.0, 1_800_000_000.0)
RUN = "01a20000-0000-7000-8000-000000000001"
#: A run held by agent "a" in attempt 1, its lease good for a long while.
HELD: dict[str, Any] = {"agent": "a", "attempt": 1, "open": True, "lease_until": NOW.mono + 1e6}
#: The same, its lease run out.
EXPIRED: dict[str, Any] = {**HELD, "lease_until": NOW.mono - 1}


def entry(state: StateType, state_name: str | None = None, **fields: Any) -> RunEntry:
    """A run of deployment ``f/d`` in ``state``, at stream head 3 unless said otherwise."""
    values: dict[str, Any] = {
        "run_id": RUN, "name": "brave-otter", "deployment": "f/d", "queue": "default",
        "state": state, "state_name": state_name or state.value.title(), "seq": 3,
        "parameters": {"n": 1}, "tags": [], "queued_at": NOW.wall - 5, "crash_retries": 3,
    }  # fmt: skip
    values.update(fields)
    return RunEntry(**values)


def deployment(**fields: Any) -> DeploymentView:
    values: dict[str, Any] = {
        "id": "d", "name": "f/d", "flow_name": "f", "deployment_name": "d",
        "entrypoint": "flows.py:f", "working_dir": "/srv", "queue": "default",
        "parameters": {}, "parameter_schema": {}, "tags": [], "description": None,
        "created": "", "updated": "", "version": 1, "schedules": [], "catchup": "latest",
        "overlap": "allow", "concurrency_limit": None, "collision": "enqueue",
    }  # fmt: skip
    values.update(fields)
    return DeploymentView(**values)


FACTS = Facts(deployment=deployment(), stream_head=None, view=None)


def pure(decide: Callable[..., Decision[Any] | NeedFacts], run: RunEntry | None,
         *args: Any) -> Decision[Any] | NeedFacts:  # fmt: skip
    """``decide(run, *args)``, checked to leave the run's entry as it was."""
    before = run.copy() if run is not None else None
    outcome = decide(run, *args)
    assert run == before, "a decision changed the entry it was given"
    return outcome


def decided(outcome: Decision[Any] | NeedFacts) -> Decision[Any]:
    assert isinstance(outcome, Decision), outcome
    return outcome


def states(run: RunEntry, changes: tuple[Change, ...]) -> list[str]:
    """The names of the states ``changes`` record, each event checked: legal by the rule
    table, valid against its model, readable by any subscriber, numbered after the run's
    head."""
    names = []
    simulated = run.copy()
    for change in changes:
        record = apply_change(simulated, change, NOW.mono)
        event = decode_event(record.body())  # as a subscriber reads it off the stream
        assert isinstance(event, FlowRunStateChanged)
        assert record.typed() == event  # what the ledger folds is what subscribers read
        assert record.typed().model_fields_set == event.model_fields_set
        assert event.seq == record.seq == simulated.seq
        names.append(event.state.name)
    assert after(run, changes, NOW.mono) == simulated  # what the decision itself foresaw
    return names
