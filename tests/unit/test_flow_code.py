"""An agent's flow cache: a flow is loaded once, again when its file or a local module it
imports changed on disk, and old versions are not kept alive by the cache."""

from __future__ import annotations

import gc
import os
import sys
import weakref
from pathlib import Path

from flowbus.agents.flow_code import FlowCache


def write(folder: Path, version: int) -> None:
    (folder / "dep.py").write_text(f"VALUE = {version}\n")
    (folder / "job.py").write_text(
        "import dep\nfrom flowbus import flow\n\n\n@flow\ndef job() -> int:\n"
        f"    return dep.VALUE * 10 + {version}\n"
    )
    for name in ("dep.py", "job.py"):  # a distinct modification time, whatever the clock
        os.utime(folder / name, ns=(version * 10**9, version * 10**9))


def test_a_flow_is_loaded_again_only_when_its_code_changed(tmp_path: Path) -> None:
    write(tmp_path, 1)
    cache = FlowCache()
    first = cache.load("job.py:job", str(tmp_path))
    assert first.flow.fn() == 11
    assert cache.load("job.py:job", str(tmp_path)) is first  # unchanged: the same
    assert any(path.endswith("dep.py") for path in first.stamps)  # a local import is watched
    module = weakref.ref(sys.modules[first.flow.fn.__module__])
    write(tmp_path, 2)
    second = cache.load("job.py:job", str(tmp_path))
    assert second is not first and second.flow.fn() == 22
    assert second.code_hash != first.code_hash
    del first
    gc.collect()
    assert module() is None  # the old version is gone once nothing runs it


def test_installed_packages_and_flowbus_are_not_watched(tmp_path: Path) -> None:
    write(tmp_path, 1)
    entrypoint = f"{tmp_path.relative_to('/')}/job.py:job"
    loaded = FlowCache().load(entrypoint, "/")  # a working dir above everything
    assert not [p for p in loaded.stamps if "site-packages" in p or "/engine/" in p]
