"""Archive before delete: pruned runs' events as gzip-compressed JSON Lines, and their import.

A prune with an archive (``flowbus store prune --archive URL``, ``FLOWBUS_RETENTION_ARCHIVE``)
writes every event of each run it is about to remove to
``URL/<day the run ended>/<batch>.jsonl.gz`` (any fsspec URL: a folder, ``s3://...``) before
the batch is removed; a prune killed between the two writes the batch again next time, and an
import records each event once. ``flowbus store import URL`` (a file or a folder of them) puts
the runs back for a post-mortem: the events are appended as they were, the projections follow,
and the runs are held from retention for ``keep_days`` (a ``retention_hold`` document per
import: a pass of the leader would otherwise prune them again at once, their end being old).
"""

from __future__ import annotations

import gzip
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from flowbus.engine.errors import StoreError, UsageError
from flowbus.engine.records import EventRecord
from flowbus.engine.store import EventStore, FlowRunView


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
        return fs, str(path)
    except (ImportError, ValueError) as exc:
        raise UsageError(f"archive {url!r}: {exc}") from exc


async def archive_runs(store: EventStore, runs: Sequence[FlowRunView], url: str) -> int:
    """Write the runs' events under ``url``, one file per day they ended; how many events."""
    by_day: dict[str, list[bytes]] = defaultdict(list)
    for run in runs:
        day = (run.ended or run.state_timestamp)[:10]
        for event in await store.read_stream(run.id):
            line = {"id": event.id, "stream_id": event.stream_id, "seq": event.seq,
                    "type": event.type, "occurred": event.occurred, "data": event.data}  # fmt: skip
            by_day[day].append(orjson.dumps(line))
    fs, root = _filesystem(url)
    batch = uuid.uuid4().hex[:16]
    written = 0
    for day, lines in by_day.items():
        folder = f"{root.rstrip('/')}/{day}"
        try:
            fs.makedirs(folder, exist_ok=True)
            with fs.open(f"{folder}/{batch}.jsonl.gz", "wb") as raw:
                raw.write(gzip.compress(b"\n".join(lines) + b"\n"))
        except OSError as exc:  # a full disk, no permission: nothing is removed then
            raise StoreError(f"cannot write the archive under {url}: {exc}") from exc
        written += len(lines)
    return written


def _files(url: str) -> Iterator[tuple[Any, str]]:
    fs, root = _filesystem(url)
    if not fs.exists(root):
        raise UsageError(f"no archive at {url}")
    if fs.isdir(root):
        for path in sorted(fs.find(root)):
            if path.endswith(".jsonl.gz"):
                yield fs, path
    else:
        yield fs, root


#: Runs an import brought back, kept from retention until a time: a document of this kind per
#: import, ``{"runs": [ids], "until": ISO}`` (``engine/retention.py`` reads them).
HOLD = "retention_hold"


async def import_archive(store: EventStore, url: str, keep_days: float = 7.0) -> tuple[int, int]:
    """Append the archived events again, and hold their runs from retention for ``keep_days``:
    (files read, events new to the store)."""
    from datetime import UTC, datetime, timedelta

    from flowbus.engine.documents import save_document

    if not 0 < keep_days < 36_600:
        raise UsageError(f"--keep-days must be above 0 (and below 100 years), not {keep_days}")
    runs: set[str] = set()
    files = added = 0
    for fs, path in _files(url):
        with fs.open(path, "rb") as raw:
            try:
                lines = gzip.decompress(raw.read()).splitlines()
            except (OSError, EOFError) as exc:
                raise UsageError(f"{path} is not a gzip-compressed archive file: {exc}") from exc
        by_run: dict[str, list[EventRecord]] = defaultdict(list)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
                record = EventRecord(item["id"], item["stream_id"], int(item["seq"]),
                                     item["type"], item["occurred"], item["data"])  # fmt: skip
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise UsageError(f"{path}:{number}: not an archived event ({exc})") from exc
            by_run[record.stream_id].append(record)
        for records in by_run.values():
            records.sort(key=lambda r: r.seq)
            added += await store.append(records)
        runs.update(by_run)
        files += 1
    if runs:
        until = (datetime.now(UTC) + timedelta(days=keep_days)).isoformat()
        hold = {"runs": sorted(runs), "until": until, "archive": url}
        await save_document(store, HOLD, uuid.uuid4().hex[:16], hold)
    return files, added


__all__ = ["HOLD", "archive_runs", "import_archive"]
