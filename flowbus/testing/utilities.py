"""``prefect_test_harness`` (``prefect.testing.utilities``): every run inside the block records
to a throw-away store, so tests never touch the real one.

    @pytest.fixture(autouse=True, scope="session")
    def flowbus_test_fixture():
        with prefect_test_harness():
            yield
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

_ISOLATED = ("FLOWBUS_HOME", "FLOWBUS_STORE_URL", "FLOWBUS_RESULTS_PATH", "FLOWBUS_NATS_URL")


@contextmanager
def prefect_test_harness(server_startup_timeout: int | None = None) -> Iterator[None]:
    """Point flowbus at a temporary home (store, results) for the block; restore after."""
    from flowbus.engine.sinks import close_store_sinks

    del server_startup_timeout  # nothing to start: runs by hand need no server
    saved = {name: os.environ.get(name) for name in _ISOLATED}
    with tempfile.TemporaryDirectory(prefix="flowbus-test-") as home:
        for name in _ISOLATED:
            os.environ.pop(name, None)
        os.environ["FLOWBUS_HOME"] = home
        try:
            yield
        finally:
            close_store_sinks()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


flowbus_test_harness = prefect_test_harness

__all__ = ["flowbus_test_harness", "prefect_test_harness"]
