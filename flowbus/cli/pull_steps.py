"""prefect.yaml's ``pull`` steps, run at deploy time: where the deployment's code is.

``set_working_directory`` names the folder; ``git_clone`` of a repository on this machine (a
path or ``file://`` URL) clones the branch's current commit into
``$FLOWBUS_HOME/code/<repository>-<commit>`` (once per commit), and agents on this machine run
the code from there. A remote repository is not fetched: agents run code from a folder on their
hosts, so it is cloned there first and named with ``set_working_directory``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from flowbus.engine.errors import UsageError
from flowbus.engine.settings import home

SET_WORKING_DIRECTORY = "prefect.deployments.steps.set_working_directory"
GIT_CLONE = "prefect.deployments.steps.git_clone"


def local_repository(settings: dict[str, Any], folder: Path) -> Path | None:
    """The repository of a ``git_clone`` step when it is on this machine, else None."""
    given = str(settings.get("repository") or "")
    if given.startswith("file://"):
        return Path(given.removeprefix("file://")).resolve()
    if not given or "://" in given or re.match(r"^[\w.-]+@[\w.-]+:", given):
        return None
    return (folder / given).expanduser().resolve()


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def clone_here(settings: dict[str, Any], repository: Path) -> Path:
    """The step's branch (default: what the repository has checked out) cloned at its current
    commit into ``$FLOWBUS_HOME/code``; a commit cloned before is reused."""
    branch = str(settings.get("branch") or "HEAD")
    commit = _git("-C", str(repository), "rev-parse", "--verify", f"{branch}^{{commit}}")
    target = home() / "code" / f"{repository.name}-{commit[:12]}"
    if not (target / ".git").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        if partial.exists():  # a clone killed half way
            shutil.rmtree(partial)
        _git("clone", "--quiet", "--no-checkout", str(repository), str(partial))
        _git("-C", str(partial), "checkout", "--quiet", commit)
        partial.rename(target)  # whole or not at all: a killed clone is not reused
    return target


def code_folder(steps: list[dict[str, Any]], folder: Path) -> Path | None:
    """The folder the steps put the code in (None: the deployment file's own)."""
    where: Path | None = None
    for step in steps:
        clone = step.get(GIT_CLONE)
        if isinstance(clone, dict):
            repository = local_repository(clone, where or folder)
            if repository is not None:
                where = clone_here(clone, repository)
        settings = step.get(SET_WORKING_DIRECTORY)
        if isinstance(settings, dict) and settings.get("directory"):
            where = ((where or folder) / str(settings["directory"])).resolve()
    return where


def skipped(steps: list[dict[str, Any]], folder: Path) -> list[str]:
    """Notes on the steps not run here."""
    said = []
    for step in steps:
        name = next(iter(step), "?")
        clone = step.get(GIT_CLONE)
        if isinstance(clone, dict) and local_repository(clone, folder) is None:
            said.append(f"pull step git_clone of {clone.get('repository')} skipped: clone it "
                        "where the agents run and name it with set_working_directory")  # fmt: skip
        elif name not in (GIT_CLONE, SET_WORKING_DIRECTORY):
            said.append(f"pull step {name} skipped: only set_working_directory and git_clone "
                        "of a repository on this machine are run")  # fmt: skip
    return said


__all__ = ["GIT_CLONE", "SET_WORKING_DIRECTORY", "code_folder", "local_repository", "skipped"]
