"""Results recorded with their runs: as JSON in the event when exact and small, else in result
storage with a reference in the event.

A run's ``output`` (on its Completed event) is one of:

- ``{"json": V}``: the result itself, V, when it is made of JSON's own types (dict with string
  keys, list, str, int, finite float, bool, None) and its JSON text is at most 64 KiB. Reading
  it back gives an equal value of the same types.
- ``{"ref": URL, "serializer": "cloudpickle", "json": V?}``: the result is in result storage at
  URL. V, when present, is a JSON rendering for readers in other languages (tuples as lists,
  datetimes as ISO text, numpy arrays as lists): lossy, so a replay reads URL.

Result storage is a URL for fsspec (``FLOWBUS_RESULT_STORAGE``): a local path by default,
``s3://bucket/prefix``, ``gs://...`` or a shared file system when agents on several hosts must
read each other's results.

A ``ref`` comes from an event, so it is not trusted: it is read only when it lies under the
configured result storage, and its bytes are unpickled only when sealed with a result key
(``sealing.py``). Anything else is refused (``ResultRefused``) and never unpickled.
"""

from __future__ import annotations

import math
import os
import posixpath
from dataclasses import dataclass
from typing import Any

import cloudpickle
import orjson

from flowbus.engine import settings
from flowbus.engine.errors import FlowbusError
from flowbus.engine.sealing import NoResultKey, UnsealError, seal, unseal

#: The largest JSON text kept in an event; a larger result goes to result storage.
INLINE_LIMIT = 64 * 1024
#: How deep an exact-JSON check looks before it gives up (and storage is used).
_MAX_DEPTH = 64
_RENDER_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z


class ResultMissing(FlowbusError):
    """A recorded result that cannot be read back (its file is gone, or unreadable)."""


class ResultRefused(ResultMissing):
    """A ``ref`` outside result storage, or bytes flowbus cannot prove it wrote: not read."""


class ResultUncheckable(ResultRefused):
    """Sealed bytes this process has no result key to check (its JSON rendering may help)."""


def is_exact_json(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` survives a JSON round trip unchanged, types included."""
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return True
    if kind is float:
        return math.isfinite(value)
    if depth >= _MAX_DEPTH:
        return False
    if kind is list:
        return all(is_exact_json(item, depth + 1) for item in value)
    if kind is dict:
        return all(
            type(key) is str and is_exact_json(item, depth + 1) for key, item in value.items()
        )
    return False


def storage_url() -> str:
    """``$FLOWBUS_RESULT_STORAGE`` (an fsspec URL or a path), default
    ``$FLOWBUS_HOME/results/runs``."""
    return os.environ.get("FLOWBUS_RESULT_STORAGE") or str(settings.results_path() / "runs")


@dataclass(frozen=True)
class OutputStorage:
    """The outputs of deployed runs' task and flow runs (the ``ref`` of an event's
    ``output``), by key under one fsspec URL; a write is whole or absent for readers. Not to be
    confused with ``caching.CacheStore``, which holds results by cache key."""

    url: str

    def location(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"

    def holds(self, ref: str) -> bool:
        """Whether ``ref`` names a file under this storage (same file system, and a path below
        its root once ``..`` and ``.`` are resolved)."""
        import fsspec

        try:
            root_fs, root = fsspec.core.url_to_fs(self.url)
            ref_fs, path = fsspec.core.url_to_fs(ref)
        except (ValueError, ImportError, OSError):
            return False
        if root_fs.protocol != ref_fs.protocol or "\x00" in path:
            return False
        root, path = posixpath.normpath(root), posixpath.normpath(path)
        return path.startswith(root.rstrip("/") + "/")

    def write(self, key: str, value: Any) -> str:
        """Store ``value`` under ``key``, sealed; return the URL it can be read back from."""
        import fsspec  # imported on first use: most results are small JSON

        blob = seal(cloudpickle.dumps(value, protocol=5))
        target = self.location(key)
        fs, path = fsspec.core.url_to_fs(target)
        parent = path.rsplit("/", 1)[0]
        fs.makedirs(parent, exist_ok=True)
        staging = f"{path}.partial-{os.getpid()}"
        with fs.open(staging, "wb") as handle:
            handle.write(blob)
        fs.mv(staging, path)  # a rename on a file system; object stores have no half objects
        return target

    def remove_runs(self, run_ids: list[str]) -> tuple[int, list[str]]:
        """Remove the outputs of these runs (each run's are under ``<url>/<run id>/``, see the
        keys of ``stored_output``'s callers): how many runs had some, and what could not be
        removed (blocking I/O)."""
        import fsspec

        removed, failed = 0, []
        fs, root = fsspec.core.url_to_fs(self.url)
        for run_id in run_ids:
            folder = f"{root.rstrip('/')}/{run_id}"
            try:
                if fs.exists(folder):
                    fs.rm(folder, recursive=True)
                    removed += 1
            except OSError as exc:  # a file system that refuses: say so, carry on
                failed.append(f"{folder}: {exc}")
        return removed, failed

    def read(self, ref: str) -> Any:
        """The value stored at ``ref``: ``ResultRefused`` when ``ref`` is not under this storage
        or its bytes are not sealed by a result key here (nothing is unpickled then),
        ``ResultMissing`` when it cannot be read."""
        import fsspec

        if not self.holds(ref):
            raise ResultRefused(
                f"result at {ref} is outside result storage {self.url}: refused, not read"
            )
        try:
            with fsspec.open(ref, "rb") as handle:
                blob = handle.read()
        except Exception as exc:
            raise ResultMissing(f"result at {ref} cannot be read: {exc!r}") from exc
        try:
            payload = unseal(blob, what=f"result at {ref}")
        except NoResultKey as exc:
            raise ResultUncheckable(str(exc)) from exc
        except UnsealError as exc:
            raise ResultRefused(str(exc)) from exc
        try:
            return cloudpickle.loads(payload)  # trusted: unseal checked our HMAC over them
        except Exception as exc:  # sealed by us, and still unreadable here (a missing module)
            raise ResultMissing(f"result at {ref} cannot be unpickled: {exc!r}") from exc


def read_output(ref: str) -> Any:
    """The value at ``ref`` in the configured result storage (see ``OutputStorage.read``)."""
    return OutputStorage(storage_url()).read(ref)


def inline_output(value: Any) -> dict[str, Any] | None:
    """``{"json": value}`` when the value can travel in the event exactly, else None."""
    if is_exact_json(value) and len(orjson.dumps(value)) <= INLINE_LIMIT:
        return {"json": value}
    return None


def stored_output(value: Any, key: str, storage: OutputStorage | None = None) -> dict[str, Any]:
    """Write ``value`` to result storage; the ``output`` that refers to it (blocking I/O)."""
    ref = (storage or OutputStorage(storage_url())).write(key, value)
    output: dict[str, Any] = {"ref": ref, "serializer": "cloudpickle"}
    rendering = json_rendering(value)
    if rendering is not None:
        output["json"] = rendering
    return output


def encode_output(value: Any, key: str, storage: OutputStorage | None = None) -> dict[str, Any]:
    """The ``output`` recorded for a result (see the module's docstring)."""
    return inline_output(value) or stored_output(value, key, storage)


def json_rendering(value: Any) -> Any:
    """A JSON rendering of ``value`` for other languages, or None when it has none that fits."""
    try:
        text = orjson.dumps(value, option=_RENDER_OPTIONS)
    except TypeError:
        return None
    return orjson.loads(text) if len(text) <= INLINE_LIMIT else None


def decode_output(output: dict[str, Any]) -> Any:
    """The result an ``output`` records; ``ResultMissing`` when it cannot be had."""
    ref = output.get("ref")
    if ref is not None:
        return read_output(ref)
    if "json" in output:
        return output["json"]
    raise ResultMissing(f"an output with neither json nor ref: {sorted(output)}")


def output_json(output: dict[str, Any] | None) -> tuple[bool, Any]:
    """(whether there is a JSON value, the value) of an ``output``: what other languages read."""
    if output is None or "json" not in output:
        return False, None
    return True, output["json"]
