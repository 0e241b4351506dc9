"""Backup and restore of a store, while orchestrators write to it.

``backup`` copies the store with SQLite's online backup API, a few hundred pages per step, so a
writer waits at most one step; the copy is consistent as of the step that finished it, and
records when it was taken (a ``store_backup`` document in the copy). ``restore`` puts a backup
in the store's place and records a pending reconciliation: the next leading orchestrator
records again every event of the events stream since a minute before the backup was taken (the
recorder's consumer restarts from that time; an event the store holds is recorded as a no-op,
so none is recorded twice). A PostgreSQL store is dumped and restored with PostgreSQL's tools,
and reconciled the same way (``pg_backup.py``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flowbus.engine.documents import save_document
from flowbus.engine.errors import StoreError, UsageError

#: A backup's own record of when it was taken (in the copy).
BACKUP = "store_backup"
#: A restore's record in the restored store: reconcile with the events stream from ``since``.
RESTORE = "store_restore"
#: Events this long before the backup are recorded again too (clocks of hosts differ).
MARGIN = timedelta(seconds=60)
_PAGES_PER_STEP = 256


@dataclass(frozen=True)
class BackupMade:
    path: Path
    taken_at: str
    bytes: int


def sqlite_path(url: str) -> Path:
    """The file of a SQLite store URL; a clear error for any other store."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    if "://" not in url:
        return Path(url)
    raise UsageError(
        f"flowbus store backup/restore take SQLite and PostgreSQL stores, not "
        f"{url.split('://', 1)[0]}"
    )


def _copy(source: Path, target: Path) -> None:
    """``source`` into ``target`` with the online backup API, in small steps."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(target, timeout=30)
        try:
            src.backup(dst, pages=_PAGES_PER_STEP, sleep=0.005)
        finally:
            dst.close()
    finally:
        src.close()


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def store_name(url: str) -> str:
    """The store as a restore's question names it: a file, or a PostgreSQL schema."""
    if is_postgres(url):
        from flowbus.engine.store.postgres import safe_url, split_url

        return f"schema {split_url(url)[1]} at {safe_url(url)}"
    return str(sqlite_path(url))


def backup(url: str, target: Path) -> BackupMade:
    """A consistent copy of the store at ``url`` in the new file ``target``."""
    if is_postgres(url):
        from flowbus.engine.store import pg_backup

        taken_at, size = pg_backup.backup(url, target)
        return BackupMade(target, taken_at, size)
    source = sqlite_path(url)
    if not source.exists():
        raise UsageError(f"no store at {source}")
    if target.exists():
        raise UsageError(f"{target} exists: give a new file (a backup never overwrites)")
    target.parent.mkdir(parents=True, exist_ok=True)
    taken_at = datetime.now(UTC).isoformat()
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        _copy(source, partial)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"backup of {source} failed: {exc}") from exc
    asyncio.run(_note(partial, BACKUP, "taken", {"taken_at": taken_at, "source": str(source)}))
    partial.rename(target)  # whole or not at all
    return BackupMade(target, taken_at, target.stat().st_size)


async def _note(path: Path, kind: str, name: str, body: dict[str, Any]) -> None:
    from flowbus.engine.store.sqlite import SqliteEventStore

    async with SqliteEventStore(path) as store:
        await save_document(store, kind, name, body)


def _is_backup(path: Path) -> bool:
    """Does the file hold a backup's record of when it was taken? (Read only.)"""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            row = db.execute("SELECT 1 FROM documents WHERE kind = ? AND name = ?",
                             (BACKUP, "taken")).fetchone()  # fmt: skip
        finally:
            db.close()
    except sqlite3.Error:
        return False
    return row is not None


async def _check(path: Path) -> tuple[Any, list[str]]:
    from flowbus.engine.store.sqlite import SqliteEventStore

    async with SqliteEventStore(path) as store:
        return await store.get_document(BACKUP, "taken"), await store.verify_projections()


def restore(backup_file: Path, url: str) -> dict[str, Any]:
    """Put the backup in the store's place and record the reconciliation the next leader
    does. The orchestrators must be stopped (their memory would not match the store)."""
    if is_postgres(url):
        from flowbus.engine.store import pg_backup

        return pg_backup.restore(backup_file, url)
    if not backup_file.exists():
        raise UsageError(f"no backup at {backup_file}")
    if not _is_backup(backup_file):  # read only: a stranger's file is left as it was
        raise UsageError(f"{backup_file} is not a flowbus store backup (flowbus store backup)")
    taken, problems = asyncio.run(_check(backup_file))
    if taken is None:
        raise UsageError(f"{backup_file} is not a flowbus store backup (flowbus store backup)")
    if problems:
        raise StoreError(f"{backup_file} does not verify: {problems[:3]}")
    target = sqlite_path(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    _copy(backup_file, target)
    since = datetime.fromisoformat(taken.body["taken_at"]) - MARGIN
    body = {"taken_at": taken.body["taken_at"], "since": since.isoformat(),
            "restored_at": datetime.now(UTC).isoformat(), "reconciled": False}  # fmt: skip
    asyncio.run(_note(target, RESTORE, "latest", body))
    return body


async def pending_reconciliation(store: Any) -> datetime | None:
    """From when the events stream must be recorded again after a restore (None: nothing)."""
    found = await store.get_document(RESTORE, "latest")
    if found is None or found.body.get("reconciled"):
        return None
    return datetime.fromisoformat(found.body["since"])


async def reconciled(store: Any) -> None:
    """The restore's reconciliation is under way: a later leader does not start it again."""
    found = await store.get_document(RESTORE, "latest")
    if found is not None and not found.body.get("reconciled"):
        await save_document(store, RESTORE, "latest", {**found.body, "reconciled": True})


__all__ = [
    "BACKUP",
    "RESTORE",
    "BackupMade",
    "backup",
    "is_postgres",
    "pending_reconciliation",
    "reconciled",
    "restore",
    "sqlite_path",
    "store_name",
]
