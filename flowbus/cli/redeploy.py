"""Deploying a deployment again with ``flowbus deploy ENTRYPOINT``: what the command does not
say is kept from the version before (its schedules and their policies, its concurrency limit),
and the command says what it kept. ``--clear-schedules`` and ``--concurrency-limit 0`` remove
them. (prefect.yaml declares each deployment whole: a deploy from it replaces them.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from flowbus.engine.schedules import CatchUp, DeploymentSchedule, Overlap
from flowbus.engine.store import DeploymentView


@dataclass(frozen=True)
class Given:
    """What this deploy says (None: it says nothing of it)."""

    schedules: list[DeploymentSchedule] | None = None
    catchup: CatchUp | None = None
    overlap: Overlap | None = None
    #: 0: no limit.
    concurrency_limit: int | None = None
    collision: str | None = None


@dataclass(frozen=True)
class Settled:
    """What the new version has, and what of it was kept (for the command to say)."""

    schedules: list[DeploymentSchedule]
    catchup: CatchUp
    overlap: Overlap
    concurrency_limit: int | None
    collision: str
    kept: list[str] = field(default_factory=list)


def settle(existing: DeploymentView | None, given: Given) -> Settled:
    """The new version's settings: given ones, else the version before's, else defaults."""
    kept: list[str] = []
    schedules = given.schedules
    if schedules is None:
        schedules = [DeploymentSchedule.model_validate(s) for s in existing.schedules] if (
            existing is not None
        ) else []  # fmt: skip
        if schedules:
            kept.append(f"{len(schedules)} schedule{'s' if len(schedules) > 1 else ''}")
    limit = given.concurrency_limit
    if limit is None and existing is not None and existing.concurrency_limit is not None:
        limit = existing.concurrency_limit
        kept.append(f"concurrency limit {limit}")
    before = existing
    return Settled(
        schedules=schedules,
        catchup=given.catchup or (cast(CatchUp, before.catchup) if before else "latest"),
        overlap=given.overlap or (cast(Overlap, before.overlap) if before else "allow"),
        concurrency_limit=limit or None,
        collision=given.collision or (before.collision if before else "enqueue"),
        kept=kept,
    )


__all__ = ["Given", "Settled", "settle"]
