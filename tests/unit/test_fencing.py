"""Attempt keys: only the agent granted a claim can sign the run's events."""

from __future__ import annotations

from flowbus.broker import subjects
from flowbus.broker.event_sink import Fence
from flowbus.broker.fencing import MAC_HEADER, FenceChecker, fence_headers
from flowbus.engine.keys import new_key

KEY = bytes.fromhex(new_key())
BODY = b'{"type":"flow_run.state","state":{"type":"COMPLETED"}}'


def test_the_granted_agents_events_pass() -> None:
    checker = FenceChecker([KEY])
    key = checker.grant("run-1", 2)
    headers = Fence("run-1", 2, bytes.fromhex(key)).headers(BODY)
    assert headers[subjects.RUN_HEADER] == "run-1" and headers[subjects.ATTEMPT_HEADER] == "2"
    assert checker.problem("run-1", 2, BODY, headers) == ""


def test_copied_headers_on_other_bytes_or_another_attempt_are_refused() -> None:
    checker = FenceChecker([KEY])
    headers = fence_headers("run-1", 2, bytes.fromhex(checker.grant("run-1", 2)), BODY)
    assert "forged" in checker.problem("run-1", 2, BODY + b" ", headers)
    assert "forged" in checker.problem("run-1", 3, BODY, headers)
    assert "forged" in checker.problem("run-2", 2, BODY, headers)


def test_no_mac_or_a_key_not_granted_is_refused() -> None:
    checker = FenceChecker([KEY])
    assert MAC_HEADER in checker.problem("run-1", 1, BODY, fence_headers("run-1", 1, None, BODY))
    guessed = fence_headers("run-1", 1, bytes.fromhex(new_key()), BODY)
    assert "forged" in checker.problem("run-1", 1, BODY, guessed)


def test_a_rotated_fence_key_still_checks_attempts_granted_before() -> None:
    old, new = KEY, bytes.fromhex(new_key())
    granted_before = FenceChecker([old]).grant("run-1", 1)
    headers = fence_headers("run-1", 1, bytes.fromhex(granted_before), BODY)
    assert FenceChecker([new, old]).problem("run-1", 1, BODY, headers) == ""
    assert FenceChecker([new]).problem("run-1", 1, BODY, headers) != ""
    # New grants use the first key.
    assert FenceChecker([new, old]).grant("run-1", 1) == FenceChecker([new]).grant("run-1", 1)
