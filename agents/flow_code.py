"""The code a run executes is the code on disk when it starts.

An agent lives for weeks; the files of its deployments change under it. ``FlowCache`` loads a
deployment's flow once, and again when its entrypoint's file or a local module it imported (a
``.py`` file under the flow's folder or its working directory) has changed on disk since: the
changed modules are dropped from ``sys.modules`` first, so the flow's imports execute again.
A run already under way keeps the module objects it started with; nothing else refers to an
old version once its runs end, so old versions do not pile up.

Each load reports the SHA-256 of the entrypoint's file, which the run records (``code_hash``).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowbus.engine.entrypoints import code_hash, entrypoint_file, load_flow
from flowbus.engine.flows import Flow

#: A file's identity on disk: (modification time in ns, size, inode).
Stamp = tuple[int, int, int]


def _stamp(path: str) -> Stamp | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def _under(path: str, folders: tuple[str, ...]) -> bool:
    return any(path.startswith(folder + os.sep) for folder in folders)


@dataclass(frozen=True)
class LoadedFlow:
    """A flow as loaded, the hash of its entrypoint's file, and what it was loaded from."""

    flow: Flow[..., Any]
    code_hash: str | None
    #: The local source files it depends on, with their stamps when it was loaded.
    stamps: dict[str, Stamp | None]
    #: The entrypoint's own file: reloaded whenever anything it depends on changed.
    entry: str | None = None

    def stale(self) -> bool:
        return any(_stamp(path) != stamp for path, stamp in self.stamps.items())


class FlowCache:
    """Flows by entrypoint: loaded once, and again when their code changed on disk."""

    def __init__(self) -> None:
        self._flows: dict[tuple[str, str], LoadedFlow] = {}
        # Loads change sys.modules: one at a time (process isolation loads in each child).
        self._lock = threading.Lock()

    def load(self, entrypoint: str, working_dir: str) -> LoadedFlow:
        key = (entrypoint, working_dir)
        with self._lock:
            cached = self._flows.get(key)
            if cached is not None and not cached.stale():
                return cached
            if cached is not None:
                _forget_modules(cached)
            loaded = self._flows[key] = _load(entrypoint, working_dir)
            return loaded


def _load(entrypoint: str, working_dir: str) -> LoadedFlow:
    path = entrypoint_file(entrypoint, working_dir)
    digest = code_hash(path) if path is not None else None
    flow = load_flow(entrypoint, working_dir)
    folders = tuple(
        {str(Path(working_dir).resolve()), *([str(path.parent)] if path is not None else [])}
    )
    files = {str(path)} if path is not None else set()
    for name, module in list(sys.modules.items()):
        source = getattr(module, "__file__", None)
        if source and _is_local(name, source, folders):
            files.add(source)
    entry = str(path) if path is not None else None
    return LoadedFlow(flow, digest, {file: _stamp(file) for file in files}, entry)


def _is_local(name: str, source: str, folders: tuple[str, ...]) -> bool:
    """A module of the deployment's own code: under its folders, and neither flowbus itself
    nor an installed package (a virtualenv inside the project folder is not the project)."""
    if name == "flowbus" or name.startswith("flowbus."):
        return False
    if "site-packages" in source or "dist-packages" in source:
        return False
    return source.endswith(".py") and _under(source, folders)


def _forget_modules(loaded: LoadedFlow) -> None:
    """Drop the modules loaded from files that changed (and the entrypoint's, which refers
    to them), so that importing them runs them again; a run under way holds its own
    references and is not affected."""
    changed = {path for path, stamp in loaded.stamps.items() if _stamp(path) != stamp}
    if loaded.entry is not None:
        changed.add(loaded.entry)
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) in changed:
            del sys.modules[name]
