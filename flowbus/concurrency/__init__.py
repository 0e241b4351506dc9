"""Global concurrency limits and rate limits, under Prefect's package name
(``prefect.concurrency``): ``flowbus.concurrency.sync`` for sync code,
``flowbus.concurrency.asyncio`` for async code.

    flowbus gcl create database --limit 5
    flowbus gcl create openai --limit 10 --slot-decay-per-second 2

    from flowbus.concurrency.sync import concurrency, rate_limit

    @task
    def load(rows):
        with concurrency("database", occupy=1):
            write(rows)          # at most 5 at once, across every agent
        rate_limit("openai")     # at most 10 at once, then 2 a second
"""

from __future__ import annotations

from collections.abc import Sequence

from flowbus.engine.concurrency import (
    AcquireConcurrencySlotTimeoutError,
    NamedSlots,
    Release,
    current_slots,
)
from flowbus.engine.context import flow_run_var, task_run_var
from flowbus.engine.errors import ConcurrencySlotAcquisitionError


async def acquire(
    names: str | Sequence[str],
    occupy: int,
    timeout_seconds: float | None,
    strict: bool,
    decay: bool,
) -> Release | None:
    """Wait for ``occupy`` slots of each named limit: through the run's agent when there is
    one, else from this process's own table."""
    from flowbus.engine.local_slots import local_slots

    if occupy < 1:
        raise ValueError("occupy must be at least 1")
    wanted = [names] if isinstance(names, str) else list(names)
    task_ctx = task_run_var.get()
    flow_ctx = task_ctx.flow_run_context if task_ctx else flow_run_var.get()
    request = NamedSlots(wanted, occupy, decay, strict, timeout_seconds,
                         run_id=flow_ctx.flow_run.id if flow_ctx else "")  # fmt: skip
    provider = current_slots() or local_slots()
    return await provider.acquire_named(wanted, request)


__all__ = ["AcquireConcurrencySlotTimeoutError", "ConcurrencySlotAcquisitionError", "acquire"]
