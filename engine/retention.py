"""Retention: which finished runs are old enough to go, and pruning them in small batches.

    flowbus store prune --older-than 30d [--keep-failed 90d] [--dry-run]

A run goes when it ended (its final state's time) longer ago than the policy says (failed and
crashed runs may be kept longer), unless something still points at it: an unfinished run (never
pruned), the run whose artifact is the latest of its key. Its files in result storage (the
outputs that were not small JSON) go with it, once its batch is committed. Each batch is one
transaction in the store (``EventStore.prune``), so a prune killed at any moment leaves every
run whole or gone, and the next prune carries on; nothing is removed twice. Two prunes at once:
one holds the lease (a document with compare-and-swap writes), the other says who holds it and
stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flowbus.engine.archive import HOLD, archive_runs
from flowbus.engine.artifacts import ARTIFACT
from flowbus.engine.documents import delete_document, document_id
from flowbus.engine.errors import UsageError
from flowbus.engine.event_types import EventType
from flowbus.engine.results import OutputStorage, storage_url
from flowbus.engine.settings import env_float
from flowbus.engine.store import EventStore, FlowRunView
from flowbus.engine.store.views import RunFilter

#: The state types a run ends in (a run in any other is never pruned).
FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
#: Those that ``keep_failed`` keeps longer.
FAILED = frozenset({"FAILED", "CRASHED"})
LEASE_KIND, LEASE_NAME = "store_prune", "lease"
#: A prune that stops renewing its lease (killed) frees it after this (``FLOWBUS_PRUNE_LEASE_
#: SECONDS``); it renews it after every batch.
LEASE_SECONDS = 120.0


def _lease() -> timedelta:
    return timedelta(seconds=env_float("FLOWBUS_PRUNE_LEASE_SECONDS", LEASE_SECONDS))


@dataclass(frozen=True)
class RetentionPolicy:
    """Finished runs older than ``older_than`` go; failed ones after ``keep_failed`` if given;
    written first to ``archive`` (a folder or fsspec URL) if given."""

    older_than: timedelta
    keep_failed: timedelta | None = None
    archive: str | None = None

    def __post_init__(self) -> None:
        for name, age in (("older-than", self.older_than), ("keep-failed", self.keep_failed)):
            if age is not None and age <= timedelta(0):
                raise UsageError(f"--{name} must be a positive age (30d, 12h), not {age}")
        if self.keep_failed is not None and self.keep_failed < self.older_than:
            raise UsageError("--keep-failed keeps failed runs longer: give at least --older-than")

    def cutoff(self, run: FlowRunView, now: datetime) -> datetime:
        """Runs that ended before this may go."""
        if self.keep_failed is not None and run.state_type in FAILED:
            return now - self.keep_failed
        return now - self.older_than


#: A deployment's own policy: a document of this kind named after it, ``{"days": N or null
#: (keep forever), "keep_failed_days": M or null, "archive": URL or null}`` (``flowbus deploy
#: --retention-days``).
RETENTION = "retention"


@dataclass(frozen=True)
class Policies:
    """The policy of each run: its deployment's own, else the default (None: keep forever)."""

    default: RetentionPolicy | None = None
    by_deployment: dict[str, RetentionPolicy | None] = field(default_factory=dict)

    def of(self, run: FlowRunView) -> RetentionPolicy | None:
        if run.deployment is not None and run.deployment in self.by_deployment:
            return self.by_deployment[run.deployment]
        return self.default

    def shortest(self) -> timedelta | None:
        """The shortest ``older_than`` of them: no run made since then may go."""
        ages = [p.older_than for p in (self.default, *self.by_deployment.values()) if p]
        return min(ages) if ages else None


def days_from_text(raw: str | None, name: str) -> float | None:
    """A number of days as a setting or an option gives it (``30``, ``0.5``); None for
    nothing or ``forever`` (keep). ``UsageError`` naming ``name`` for anything else."""
    text = (raw or "").strip()
    if text in ("", "forever"):
        return None
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not 0 < days < 366_000:
        raise UsageError(f"{name} {text!r}: a number of days above 0, or 'forever'")
    return days


def policy_from_days(
    days: float | None, keep_failed_days: float | None, archive: str | None = None
) -> RetentionPolicy | None:
    """A policy from days as settings and documents give them (None days: keep forever)."""
    if days is None:
        return None
    failed = timedelta(days=keep_failed_days) if keep_failed_days is not None else None
    if archive is not None and not (isinstance(archive, str) and archive.strip()):
        raise UsageError(f"an archive is a folder or an fsspec URL, not {archive!r}")
    return RetentionPolicy(timedelta(days=days), failed, archive)


async def configured_policies(store: EventStore, default: RetentionPolicy | None) -> Policies:
    """The deployments' own policies (documents) over ``default`` (the settings')."""
    own: dict[str, RetentionPolicy | None] = {}
    for document in await store.list_documents(RETENTION):
        body = document.body if isinstance(document.body, dict) else {}
        try:
            own[document.name] = policy_from_days(
                body.get("days"), body.get("keep_failed_days"), body.get("archive")
            )
        except (UsageError, TypeError, ValueError):  # a bad document keeps its runs
            own[document.name] = None
    return Policies(default, own)


def _ended(run: FlowRunView) -> datetime:
    return datetime.fromisoformat(run.ended or run.state_timestamp)


def choose(
    runs: Iterable[FlowRunView], policies: Policies, now: datetime, pinned: set[str]
) -> tuple[list[FlowRunView], int]:
    """The runs that may go, and how many as old are kept because something points at them
    (pure: the decision of a prune)."""
    old = [run for run in runs if _old_enough(run, policies, now)]
    going = [run for run in old if run.id not in pinned]
    return going, len(old) - len(going)


def _old_enough(run: FlowRunView, policies: Policies, now: datetime) -> bool:
    policy = policies.of(run)
    return policy is not None and run.state_type in FINAL and _ended(run) < policy.cutoff(run, now)


@dataclass
class PruneReport:
    """What a prune removed (or, dry, would remove)."""

    dry_run: bool
    runs: int = 0
    kept_pinned: int = 0
    examined: int = 0
    sample: list[str] = field(default_factory=list)
    #: Runs whose files in result storage were removed with them, and what could not be.
    result_folders: int = 0
    files_left: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "runs": self.runs, "kept_pinned": self.kept_pinned,
                "examined": self.examined, "sample": self.sample,
                "result_folders": self.result_folders, "files_left": self.files_left}  # fmt: skip


def archives(
    going: list[FlowRunView], policies: Policies, default: str | None
) -> dict[str, list[FlowRunView]]:
    """Where each run is written before it goes: its policy's archive, else ``default``."""
    found: dict[str, list[FlowRunView]] = {}
    for run in going:
        policy = policies.of(run)
        target = (policy.archive if policy is not None else None) or default
        if target is not None:
            found.setdefault(target, []).append(run)
    return found


async def pinned_runs(store: EventStore, now: datetime | None = None) -> set[str]:
    """Runs something still points at: the latest artifact of a key, and the runs an import
    brought back while its hold lasts (``engine/archive.py``)."""
    pinned = {
        str(document.body["flow_run_id"])
        for document in await store.list_documents(ARTIFACT)
        if isinstance(document.body, dict) and document.body.get("flow_run_id")
    }
    moment = (now or datetime.now(UTC)).isoformat()
    for hold in await store.list_documents(HOLD):
        body = hold.body if isinstance(hold.body, dict) else {}
        if str(body.get("until", "")) > moment:
            pinned.update(str(run) for run in body.get("runs") or [])
    return pinned


async def forget_expired_holds(store: EventStore, now: datetime) -> int:
    """Remove the import holds that have run out; how many."""
    gone = 0
    for hold in await store.list_documents(HOLD):
        body = hold.body if isinstance(hold.body, dict) else {}
        if str(body.get("until", "")) <= now.isoformat():
            gone += await delete_document(store, HOLD, hold.name)
    return gone


async def take_lease(store: EventStore, holder: str, now: datetime) -> str | None:
    """Hold the prune lease; None when held, else who holds it (and until when)."""
    stream = document_id(LEASE_KIND, LEASE_NAME)

    def decide(events: list[Any]) -> tuple[str | None, list[tuple[str, dict[str, Any]]]]:
        body = events[-1].data.get("body") if events else None
        if isinstance(body, dict) and body.get("holder") not in (None, holder):
            until = datetime.fromisoformat(body["until"])
            if until > now:
                return f"{body['holder']} (until {body['until']})", []
        lease = {"holder": holder, "until": (now + _lease()).isoformat()}
        return None, [(EventType.DOCUMENT_SAVED,
                       {"kind": LEASE_KIND, "name": LEASE_NAME, "body": lease})]  # fmt: skip

    return await store.transact(stream, decide)


async def release_lease(store: EventStore, holder: str) -> None:
    stream = document_id(LEASE_KIND, LEASE_NAME)

    def decide(events: list[Any]) -> tuple[None, list[tuple[str, dict[str, Any]]]]:
        body = events[-1].data.get("body") if events else None
        if not isinstance(body, dict) or body.get("holder") != holder:
            return None, []
        freed = {"kind": LEASE_KIND, "name": LEASE_NAME, "body": {"holder": None}}
        return None, [(EventType.DOCUMENT_SAVED, freed)]

    await store.transact(stream, decide)


async def prune(
    store: EventStore,
    policy: RetentionPolicy | Policies,
    dry_run: bool = False,
    batch: int = 500,
    archive: str | None = None,
) -> PruneReport:
    """Prune what the policy (one for every run, or ``Policies``) lets go, ``batch`` runs per
    transaction. Each run is archived first where its policy says, else to ``archive`` if
    given. ``UsageError`` when another prune holds the lease."""
    policies = policy if isinstance(policy, Policies) else Policies(policy)
    if not 1 <= batch <= 10_000:
        raise UsageError(f"--batch must be between 1 and 10000, not {batch}")
    holder = f"prune-{uuid.uuid4().hex[:12]}"
    now = datetime.now(UTC)
    report = PruneReport(dry_run)
    shortest = policies.shortest()
    if shortest is None:  # everything is kept forever
        return report
    if not dry_run:
        held = await take_lease(store, holder, now)
        if held is not None:
            raise UsageError(f"another prune is running: {held}; nothing was removed (a prune "
                             "that was killed frees its lease then)")  # fmt: skip
    try:
        pinned = await pinned_runs(store, now)
        if not dry_run:
            await forget_expired_holds(store, now)
        # A run ends after it is made: one made after the cutoff cannot have ended before it.
        runs = RunFilter(created_before=(now - shortest).isoformat())
        while True:
            page = await store.find_runs(runs, limit=batch)
            if not page:
                break
            runs = dataclasses.replace(runs, cursor=(page[-1].created, page[-1].id))
            report.examined += len(page)
            going, kept = choose(page, policies, now, pinned)
            chosen = [run.id for run in going]
            report.kept_pinned += kept
            report.sample.extend(chosen[: max(0, 10 - len(report.sample))])
            if chosen and not dry_run:
                for target, runs_there in archives(going, policies, archive).items():
                    await archive_runs(store, runs_there, target)  # whole before any delete
                report.runs += await store.prune(chosen)
                # Files after the commit: a kill between leaves files of no run (harmless), never
                # a run whose results are gone.
                removed, left = await asyncio.to_thread(
                    OutputStorage(storage_url()).remove_runs, chosen
                )
                report.result_folders += removed
                report.files_left.extend(left)
                held = await take_lease(store, holder, datetime.now(UTC))  # renewed per batch
                if held is not None:  # this prune stalled past its lease; another took over
                    raise UsageError(f"the prune lease went to {held}; stopped after a batch")
            else:
                report.runs += len(chosen)
    finally:
        if not dry_run:
            await release_lease(store, holder)
    return report


__all__ = [
    "FINAL",
    "RETENTION",
    "Policies",
    "PruneReport",
    "RetentionPolicy",
    "choose",
    "configured_policies",
    "days_from_text",
    "policy_from_days",
    "prune",
    "take_lease",
]
