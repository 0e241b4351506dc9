"""Flows that integration tests deploy and agents run."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from flowbus import flow, get_run_logger, task


@task
def double(x: int) -> int:
    return 2 * x


@flow
def quick(n: int = 3) -> int:
    """A few task runs and a result."""
    get_run_logger().info("adding %d doubles", n)
    return sum(double(i) for i in range(n))


@flow
def noop() -> None:
    """Nothing at all: for dispatch overhead."""


@flow(retries=1)
async def sleepy(seconds: float = 1.0, marker: str = "") -> str:
    """Sleeps; with ``marker`` it leaves a file per start (to count executions)."""
    if marker:
        Path(marker).mkdir(parents=True, exist_ok=True)
        (Path(marker) / f"{os.getpid()}-{time.monotonic_ns()}").touch()
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@flow(retries=1)
def blocking(seconds: float = 1.0) -> str:
    """A sync flow that blocks its thread."""
    time.sleep(seconds)
    return "done"


@flow
def fails(reason: str = "bad input") -> None:
    """Fails with a message (what a bug in a flow looks like)."""
    raise ValueError(reason)


@flow
def dies() -> None:
    """Kills its own process: what a segfault in a C extension looks like to the agent."""
    os._exit(3)
