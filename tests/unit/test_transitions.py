"""The rule table, walked over every (from, to) pair."""

from __future__ import annotations

import itertools

import pytest

from flowbus.engine.states import StateType
from flowbus.engine.transitions import decide

S = StateType
NON_TERMINAL_OUT = {S.CANCELLING, S.CANCELLED, S.CRASHED}

# The policy, written out pair by pair independently of engine/transitions.py.
EXPECTED_ALLOWED = {
    None: {S.SCHEDULED, S.PENDING, S.RUNNING},
    S.SCHEDULED: {S.SCHEDULED, S.PENDING, S.RUNNING, S.FAILED} | NON_TERMINAL_OUT,
    S.PENDING: {S.SCHEDULED, S.RUNNING, S.COMPLETED, S.FAILED} | NON_TERMINAL_OUT,
    S.RUNNING: {S.SCHEDULED, S.PAUSED, S.COMPLETED, S.FAILED} | NON_TERMINAL_OUT,
    S.PAUSED: {S.SCHEDULED, S.PENDING, S.RUNNING, S.FAILED} | NON_TERMINAL_OUT,
    S.CANCELLING: {S.CANCELLED, S.FAILED, S.CRASHED},
    S.COMPLETED: set(),
    S.FAILED: {S.SCHEDULED},
    S.CANCELLED: {S.SCHEDULED},  # a retry asked for (flowbus runs retry)
    S.CRASHED: {S.SCHEDULED},
}

PAIRS = list(itertools.product([None, *StateType], StateType))


def test_every_pair_is_covered() -> None:
    assert len(PAIRS) == 10 * 9


@pytest.mark.parametrize(("current", "proposed"), PAIRS, ids=lambda s: getattr(s, "value", "NONE"))
def test_decide(current: StateType | None, proposed: StateType) -> None:
    verdict = decide(current, proposed)
    assert verdict.accepted == (proposed in EXPECTED_ALLOWED[current])
    if not verdict.accepted:
        assert proposed.value in verdict.reason


def test_completed_after_cancelled_is_refused_with_a_reason() -> None:
    verdict = decide(S.CANCELLED, S.COMPLETED)
    assert not verdict
    assert "already CANCELLED" in verdict.reason


def test_terminal_states_are_exactly_the_four_final_types() -> None:
    assert {t for t in StateType if t.is_terminal} == {
        S.COMPLETED,
        S.FAILED,
        S.CANCELLED,
        S.CRASHED,
    }
