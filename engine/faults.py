"""The test seam: the one place where a test makes a daemon die at a chosen point.

A test starts a daemon with ``FLOWBUS_TEST_CRASH_AT=<point>``; the daemon exits at once (code 70,
no cleanup, as a kill -9 would leave it) the first time it reaches ``crash_point(<point>)``.
Without the variable every crash point is a no-op. The points:

- ``after-schedule-write``: the orchestrator has recorded a submitted run but not yet published
  its run request (the outbox must publish it after a restart).
- ``after-claim-write``: the orchestrator has recorded a claim but not answered it (the agent,
  asking again, must get the same grant).
"""

from __future__ import annotations

import os

#: Read once at start: the test sets it in the daemon's environment.
_ARMED = os.environ.get("FLOWBUS_TEST_CRASH_AT", "")
EXIT_CODE = 70


def crash_point(name: str) -> None:
    """Die here if a test asked for it (see the module's docstring)."""
    if name == _ARMED:
        os._exit(EXIT_CODE)
