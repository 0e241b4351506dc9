"""Cache keys and persisted results: a cache hit skips the task and records it as Cached."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import orjson

from flowbus.engine import settings
from flowbus.engine.sealing import UnsealError, seal, unseal

logger = logging.getLogger(__name__)


class _HasTaskKey(Protocol):
    task_key: str


class _CacheContext(Protocol):
    @property
    def task(self) -> _HasTaskKey: ...


def stable_hash(*parts: Any) -> str | None:
    """A hex digest that is the same in every process for equal inputs; None if unhashable."""
    digest = hashlib.sha256()
    for part in parts:
        try:
            blob = orjson.dumps(
                part,
                option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
            )
        except TypeError:
            try:
                blob = pickle.dumps(part, protocol=5)
            except Exception:
                return None
        digest.update(len(blob).to_bytes(8, "big"))
        digest.update(blob)
    return digest.hexdigest()


def task_input_hash(context: _CacheContext, arguments: dict[str, Any]) -> str | None:
    """Cache key from the task's identity and its inputs (Prefect's ``task_input_hash``)."""
    return stable_hash(context.task.task_key, arguments)


@dataclass(frozen=True)
class CachedResult:
    value: Any
    created: datetime
    expires: datetime | None


class CacheStore:
    """Cached task results (cache policies, ``persist_result``, transactions) pickled to
    files, one per cache key, written atomically so readers never see half. Each file is
    sealed (``sealing.py``): one that is not, or whose seal no result key here made, is a
    miss and is never unpickled. Not to be confused with ``results.OutputStorage``, where
    deployed runs record their task outputs."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or settings.results_path()

    def _file(self, key: str) -> Path:
        safe = hashlib.sha256(key.encode()).hexdigest() if len(key) > 128 or "/" in key else key
        return self.path / safe

    def read(self, key: str, now: datetime | None = None) -> CachedResult | None:
        """The stored result for ``key``, or None when absent, expired or unreadable."""
        try:
            with open(self._file(key), "rb") as handle:
                payload = unseal(handle.read(), what=f"cached result {key!r}")
            record = pickle.loads(payload)  # trusted: unseal checked our HMAC over these bytes
        except UnsealError as exc:
            logger.warning("%s: treated as a cache miss", exc)
            return None
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
            return None
        if not isinstance(record, CachedResult):
            return None
        if record.expires is not None and record.expires <= (now or datetime.now(UTC)):
            return None
        return record

    def write(self, key: str, value: Any, expiration: timedelta | None = None) -> None:
        now = datetime.now(UTC)
        record = CachedResult(value, now, now + expiration if expiration else None)
        import tempfile

        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(seal(pickle.dumps(record, protocol=5)))
            os.replace(tmp, self._file(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
