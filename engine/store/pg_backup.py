"""Backup and restore of a PostgreSQL store with PostgreSQL's own tools, and the same
reconciliation with the events stream as a SQLite restore (``engine/store/backup.py``).

``backup`` records when it is taken (the ``store_backup`` document, written to the live store
just before the dump, so the dump holds it), then runs ``pg_dump -Fc`` of the store's schema
(one consistent snapshot; orchestrators keep writing) into a new file, and checks the file with
``pg_restore --list``. ``restore`` checks the file is such a dump of a flowbus store, replaces
the schema with it in one transaction (``pg_restore --clean --single-transaction``), verifies the
projections, and records the pending reconciliation the next leader carries out. The
``pg_dump``/``pg_restore`` on the PATH must be of the server's major version or newer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from flowbus.engine.documents import save_document
from flowbus.engine.errors import StoreError, UsageError
from flowbus.engine.store.postgres import PostgresEventStore, split_url

#: The first bytes of a pg_dump archive in its custom format.
_MAGIC = b"PGDMP"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise UsageError(f"{name} is not on the PATH: install PostgreSQL's client tools")
    return found


def _run(args: list[str], what: str, password: str | None = None) -> str:
    # The password goes in the tool's environment: a command line is visible to every user.
    env = {**os.environ, "PGPASSWORD": password} if password else None
    done = subprocess.run(args, capture_output=True, text=True, timeout=3600, env=env)
    if done.returncode != 0:
        raise StoreError(f"{what} failed: {done.stderr.strip()[:2000]}")
    return done.stdout


def _connection(url: str) -> tuple[str, str, str | None]:
    """(the libpq URL without flowbus's schema option or the password, the schema, the
    password)."""
    dsn, schema = split_url(url)
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn, schema, None
    user = f"{parts.username}@" if parts.username else ""
    netloc = user + parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc)), schema, unquote(parts.password)


async def _on_store(url: str, action: Any) -> Any:
    async with PostgresEventStore(url) as store:
        return await action(store)


def backup(url: str, target: Path) -> tuple[str, int]:
    """Dump the store's schema into the new file ``target``: (when it was taken, its size)."""
    from flowbus.engine.store.backup import BACKUP

    if target.exists():
        raise UsageError(f"{target} exists: give a new file (a backup never overwrites)")
    dsn, schema, password = _connection(url)
    pg_dump, pg_restore = _tool("pg_dump"), _tool("pg_restore")
    taken_at = datetime.now(UTC).isoformat()
    note = {"taken_at": taken_at, "source": f"schema {schema}"}
    asyncio.run(_on_store(url, lambda s: save_document(s, BACKUP, "taken", note)))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        _run([pg_dump, "--format=custom", f"--schema={schema}", f"--file={partial}", dsn],
             "pg_dump", password)  # fmt: skip
        _check_archive(pg_restore, partial, schema)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(target)  # whole or not at all
    return taken_at, target.stat().st_size


def _check_archive(pg_restore: str, path: Path, schema: str | None) -> None:
    """That ``path`` is a readable pg_dump archive of a flowbus store (of ``schema``)."""
    with path.open("rb") as handle:
        if handle.read(len(_MAGIC)) != _MAGIC:
            raise UsageError(f"{path} is not a pg_dump archive (pg_dump --format=custom)")
    listing = _run([pg_restore, "--list", str(path)], "pg_restore --list")
    tables = [line.split() for line in listing.splitlines() if " TABLE DATA " in line]
    found = {(words[-3], words[-2]) for words in tables if len(words) >= 3}
    wanted = {"events", "documents", "flow_runs"}
    schemas = {s for s, table in found if table in wanted}
    if not schemas or (schema is not None and schema not in schemas):
        raise UsageError(f"{path} is not a dump of a flowbus store" + (
            f" in schema {schema}" if schema else ""))  # fmt: skip


def restore(backup_file: Path, url: str) -> dict[str, Any]:
    """Replace the store's schema with the dump and record the reconciliation. The
    orchestrators must be stopped."""
    from flowbus.engine.store.backup import BACKUP, MARGIN, RESTORE

    if not backup_file.exists():
        raise UsageError(f"no backup at {backup_file}")
    dsn, schema, password = _connection(url)
    pg_restore = _tool("pg_restore")
    _check_archive(pg_restore, backup_file, schema)
    _run([pg_restore, "--clean", "--if-exists", "--single-transaction", "--no-owner",
          f"--schema={schema}", f"--dbname={dsn}", str(backup_file)], "pg_restore",
         password)  # fmt: skip

    async def reconcile(store: PostgresEventStore) -> dict[str, Any]:
        taken = await store.get_document(BACKUP, "taken")
        if taken is None:
            raise UsageError(f"{backup_file} holds no record of when it was taken: it was not "
                             "made by flowbus store backup")  # fmt: skip
        problems = await store.verify_projections()
        if problems:
            raise StoreError(f"the restored store does not verify: {problems[:3]}")
        since = datetime.fromisoformat(taken.body["taken_at"]) - MARGIN
        body = {"taken_at": taken.body["taken_at"], "since": since.isoformat(),
                "restored_at": datetime.now(UTC).isoformat(), "reconciled": False}  # fmt: skip
        await save_document(store, RESTORE, "latest", body)
        return body

    result: dict[str, Any] = asyncio.run(_on_store(url, reconcile))
    return result


__all__ = ["backup", "restore"]
