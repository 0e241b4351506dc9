"""Benchmarks' working folders: fresh temporary ones, removed when the benchmark's process
exits (each holds a store and a JetStream folder, tens of megabytes) unless
``FLOWBUS_BENCH_KEEP`` is set, to look at the logs and the store after a run."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path


def scratch_folder(prefix: str) -> Path:
    """A new empty folder under the system's temporary folder, gone at exit."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(_remove, folder)
    return folder


def _remove(folder: Path) -> None:
    if os.environ.get("FLOWBUS_BENCH_KEEP"):
        print(f"kept {folder}", file=sys.stderr)
        return
    shutil.rmtree(folder, ignore_errors=True)
