"""Loading a flow from an entrypoint: ``path/to/file.py:flow_name`` or ``package.module:flow_name``.

Deployments name their flow this way; agents load it to run it. Every way it can go wrong (no
such file, code that fails to import, no such name, not a flow) is an ``EntrypointError`` that
says which, so a broken deployment fails its run with a readable reason instead of crashing
whoever loads it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from flowbus.engine.errors import FlowbusError
from flowbus.engine.flows import Flow


class EntrypointError(FlowbusError):
    """An entrypoint that does not lead to a flow."""


def split_entrypoint(entrypoint: str) -> tuple[str, str]:
    """``"where:name"`` into its two parts, or ``EntrypointError``."""
    where, sep, name = entrypoint.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise EntrypointError(
            f"entrypoint {entrypoint!r} is not of the form path/to/file.py:flow_function "
            "or package.module:flow_function"
        )
    return where, name


def _import_file(path: Path) -> Any:
    # The same name in every process (``hash()`` of a str is not): task keys, input hashes
    # and pickled results that refer to the module's classes must agree across agents.
    module_name = f"flowbus_entrypoint_{hashlib.sha256(str(path).encode()).hexdigest()[:16]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise EntrypointError(f"{path} cannot be imported as Python code")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    # The flow's own folder is importable, as it is when the file is run as a script.
    folder = str(path.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        raise _import_failure(str(path), exc) from exc
    finally:
        if added:
            sys.path.remove(folder)
    return module


def _import_failure(where: str, exc: BaseException) -> EntrypointError:
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return EntrypointError(f"importing {where} failed: {detail}")


def entrypoint_file(entrypoint: str, working_dir: str | Path | None = None) -> Path | None:
    """The source file an entrypoint's code is in (None when it cannot be found)."""
    where, _ = split_entrypoint(entrypoint)
    base = Path(working_dir) if working_dir is not None else Path.cwd()
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = (base / where).resolve()
        return path if path.is_file() else None
    spec = None
    folder = str(base.resolve())
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec = importlib.util.find_spec(where)
    except (ImportError, ValueError):
        return None
    finally:
        if added:
            sys.path.remove(folder)
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


def code_hash(path: Path) -> str:
    """The SHA-256 of a source file's bytes (what a deployment and a run record)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_flow(entrypoint: str, working_dir: str | Path | None = None) -> Flow[..., Any]:
    """The flow an entrypoint names; a file path is relative to ``working_dir`` (default: cwd)."""
    target = load_object(entrypoint, working_dir)
    if not isinstance(target, Flow):
        where, name = split_entrypoint(entrypoint)
        raise EntrypointError(f"{where}:{name} is a {type(target).__name__}, not a @flow")
    return target


def _nearby(base: Path, where: str, name: str) -> str:
    """A hint naming files of that name in the folders below ``base`` (a guide's command run
    from a repository's root, its file in ``examples/``), or nothing."""
    wanted = Path(where).name
    found: list[str] = []
    for depth in ("*", "*/*"):
        for candidate in sorted(base.glob(f"{depth}/{wanted}")):
            if ".venv" not in candidate.parts and "site-packages" not in candidate.parts:
                found.append(candidate.relative_to(base).as_posix())
        if found:
            break
    if not found:
        return ""
    return f"; did you mean {found[0]}:{name}?" + (f" (or {', '.join(found[1:3])})" if (
        len(found) > 1
    ) else "")  # fmt: skip


def load_object(entrypoint: str, working_dir: str | Path | None = None) -> Any:
    """Whatever ``path/to/file.py:name`` or ``package.module:name`` names (a flow, a block
    class, ...)."""
    where, name = split_entrypoint(entrypoint)
    base = Path(working_dir) if working_dir is not None else Path.cwd()
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = (base / where).resolve()
        if not path.is_file():
            raise EntrypointError(
                f"entrypoint file {path} does not exist{_nearby(base, where, name)}"
            )
        module = _import_file(path)
    else:
        folder = str(base.resolve())  # a module path is relative to the working directory
        added = folder not in sys.path
        if added:
            sys.path.insert(0, folder)
        try:
            module = importlib.import_module(where)
        except BaseException as exc:
            raise _import_failure(f"module {where}", exc) from exc
        finally:
            if added:
                sys.path.remove(folder)
    target = getattr(module, name, None)
    if target is None:
        raise EntrypointError(f"{where} has no {name!r}")
    return target
