"""Fixtures shared by every test: an isolated $FLOWBUS_HOME per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from flowbus.engine.sinks import close_store_sinks

if TYPE_CHECKING:
    from tests.integration.stack import Stack


@pytest.fixture(autouse=True)
def _daemons_started_before(request: pytest.FixtureRequest) -> None:
    """Where this test's daemons begin in ``stack.STARTED`` (for the failure report)."""
    from tests.integration import stack

    request.node.stash[_FIRST_DAEMON] = len(stack.STARTED)


_FIRST_DAEMON = pytest.StashKey[int]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report ends with what its daemons printed last: a failure seen only on
    a busy CI machine can then be read, not guessed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed or _FIRST_DAEMON not in item.stash:
        return
    from tests.integration import stack

    started = stack.STARTED[item.stash[_FIRST_DAEMON] :]
    if started:
        report.sections.append(("daemons' last lines", stack.daemon_logs(started)))


@pytest.fixture
def flowbus_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh $FLOWBUS_HOME (store, results) for one test; its store is closed afterwards."""
    home = tmp_path / "flowbus-home"
    monkeypatch.setenv("FLOWBUS_HOME", str(home))
    monkeypatch.delenv("FLOWBUS_STORE_URL", raising=False)
    monkeypatch.delenv("FLOWBUS_RESULTS_PATH", raising=False)
    yield home
    close_store_sinks()


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A private nats-server for the test, stopped with every daemon afterwards, even when the
    test fails. A module that wants daemons started for each test overrides ``stack`` with a
    fixture that asks for this one and starts them.

    The test reads results as a client on the stack's machine does: from its result storage,
    checked with its result key."""
    from tests.integration.stack import Stack

    stack = Stack(tmp_path)
    stack.share_results(monkeypatch)
    try:
        yield stack
    finally:
        stack.close()


#: The longest test modules (minutes of daemons waiting on faults and leases), started first:
#: ``make test`` hands whole modules to its workers in collection order, so a long module
#: collected last would leave the other workers idle at the end. An ordering hint only.
LONGEST_FIRST = (
    "tests/cluster/test_cluster.py",
    "tests/integration/test_run_invariants.py",
    "tests/integration/test_orchestrators.py",
    "tests/e2e/test_web_ui.py",
    "tests/integration/test_run_path.py",
    "tests/integration/test_limits.py",
    "tests/integration/test_remote.py",
    "tests/integration/test_schedules.py",
    "tests/e2e/test_stack_cli.py",
    "tests/integration/test_chaos.py",
    "tests/integration/test_dask.py",
    "tests/integration/test_replay.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The cluster test (five hosts' daemons, faults on a timer) first, beside the light unit
    # and compatibility modules rather than the other long ones: the machine is at its
    # busiest when the long modules run together.
    rank = {path: n + 2 for n, path in enumerate(LONGEST_FIRST)}
    rank[LONGEST_FIRST[0]] = 0

    def order(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        if path.startswith(("tests/unit/", "tests/compat/")):
            return 1
        return rank.get(path, len(rank) + 2)

    items.sort(key=order)  # stable: the rest keep their order
