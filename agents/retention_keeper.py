"""The leader's retention pass: every ``FLOWBUS_RETENTION_INTERVAL`` seconds (default an hour)
finished runs past their policy are pruned in small batches (``engine/retention.py``): the
deployment's own (``flowbus deploy --retention-days``), else ``FLOWBUS_RETENTION_DAYS`` (and
``FLOWBUS_KEEP_FAILED_DAYS``). With neither, everything is kept, as before."""

from __future__ import annotations

import os

import structlog

from flowbus.agents.lifecycle import Daemon, Loop
from flowbus.engine.errors import FlowbusError
from flowbus.engine.retention import (
    RetentionPolicy,
    configured_policies,
    days_from_text,
    policy_from_days,
    prune,
)
from flowbus.engine.settings import env_float
from flowbus.engine.store import EventStore

log = structlog.get_logger("flowbus.retention")

#: Seconds between passes, and before the first (a leader just elected has more urgent work).
DEFAULT_INTERVAL = 3600.0


def _days(name: str) -> float | None:
    return days_from_text(os.environ.get(name), name)


def default_policy() -> RetentionPolicy | None:
    """``FLOWBUS_RETENTION_DAYS`` (unset or ``forever``: keep) and ``FLOWBUS_KEEP_FAILED_DAYS``."""
    return policy_from_days(_days("FLOWBUS_RETENTION_DAYS"), _days("FLOWBUS_KEEP_FAILED_DAYS"))


def default_archive() -> str | None:
    """``FLOWBUS_RETENTION_ARCHIVE``: where pruned runs are written first (None: nowhere)."""
    return os.environ.get("FLOWBUS_RETENTION_ARCHIVE") or None


class RetentionKeeper(Daemon):
    """Prunes on a timer while this orchestrator leads."""

    name = "retention"

    def __init__(self, store: EventStore, interval: float | None = None) -> None:
        super().__init__()
        self.store = store
        self.interval = interval or env_float("FLOWBUS_RETENTION_INTERVAL", DEFAULT_INTERVAL)
        # Read now: a bad setting stops the orchestrator at its start, with the reason.
        self.default = default_policy()
        self.pruned = 0

    def loops(self) -> dict[str, Loop]:
        return {"retention": self._keep}

    async def _keep(self) -> None:
        while not await self.until_stopped(self.interval):
            try:
                await self.pass_once()
            except FlowbusError as exc:  # another prune runs, a store refusal: next time
                log.warning("retention pass skipped", error=str(exc))
            except Exception:  # a bug must not end the leader's other work
                log.exception("retention pass failed")

    async def pass_once(self) -> int:
        """One pass; how many runs it removed."""
        policies = await configured_policies(self.store, self.default)
        report = await prune(self.store, policies, batch=200, archive=default_archive())
        if report.runs:
            log.info("retention pruned runs", runs=report.runs, kept=report.kept_pinned)
        self.pruned += report.runs
        return report.runs


__all__ = ["RetentionKeeper"]
