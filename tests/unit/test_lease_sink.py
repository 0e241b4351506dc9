"""A claimed run's sink (``agents/execution.py``): its flush waits out NATS trouble instead of
failing the run's engine, unless the run was lost to another attempt (logic only: the
publishing itself is tested against a real nats-server in ``test_event_sink.py``)."""

from __future__ import annotations

import pytest

from flowbus.agents.execution import _LeaseSink
from flowbus.broker.errors import BrokerError


class Flaky:
    """A base sink whose flushes fail ``failures`` times (a reconnect took the acks)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.flushes = 0

    async def flush_async(self) -> None:
        self.flushes += 1
        if self.flushes <= self.failures:
            raise BrokerError("reconnected while 5 events awaited their acks")


async def test_a_flush_waits_out_a_reconnect() -> None:
    base = Flaky(failures=2)
    sink = _LeaseSink(base)  # type: ignore[arg-type]
    await sink.flush_async()
    assert base.flushes == 3


async def test_a_lost_run_does_not_wait() -> None:
    base = Flaky(failures=5)
    sink = _LeaseSink(base)  # type: ignore[arg-type]
    sink.lost = True
    with pytest.raises(BrokerError):
        await sink.flush_async()
    assert base.flushes == 1
