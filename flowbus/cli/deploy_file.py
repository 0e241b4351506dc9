"""``prefect.yaml`` (or ``flowbus.yaml``): the deployments a folder declares, as Prefect 3's
``prefect deploy`` reads them, for ``flowbus deploy`` with no entrypoint.

Read here (pure: text in, entries out): each deployment's ``name``, ``entrypoint``,
``parameters``, ``tags``, ``description``, ``schedules`` (cron, interval, rrule, with
``timezone``, ``active`` and ``anchor_date``), ``work_pool`` (its ``work_queue_name``, else its
``name``, is the work queue), ``concurrency_limit`` (a number or ``{limit,
collision_strategy}``) and ``enforce_parameter_schema``; YAML anchors and merge keys as
Prefect's examples use them; ``triggers``; the ``pull`` steps ``set_working_directory`` and
``git_clone`` of a repository on this machine (``pull_steps.py``). ``build`` and ``push``
steps are skipped with a note (agents run the code where it is). A key flowbus does not know, or
a value of the wrong kind, is an error naming the key and its line.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowbus.cli.pull_steps import code_folder, skipped
from flowbus.engine.errors import UsageError

#: Looked for in this order in the folder ``flowbus deploy`` runs in.
FILE_NAMES = ("flowbus.yaml", "prefect.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScheduleEntry(_Strict):
    cron: str | None = None
    interval: float | timedelta | None = None
    rrule: str | None = None
    timezone: str | None = None
    anchor_date: str | None = None
    active: bool = True
    #: Prefect's cron option (day-of-month OR day-of-week); cron here always ORs them.
    day_or: bool | None = None


class WorkPool(_Strict):
    name: str | None = None
    work_queue_name: str | None = None
    #: Per-run settings of Prefect's workers; agents here take none (noted when given).
    job_variables: dict[str, Any] = Field(default_factory=dict)


class ConcurrencyLimit(_Strict):
    limit: int = Field(ge=1)
    collision_strategy: Literal["ENQUEUE", "CANCEL_NEW"] = "ENQUEUE"


class DeploymentEntry(_Strict):
    name: str
    entrypoint: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    description: str | None = None
    version: str | None = None
    schedules: list[ScheduleEntry] = Field(default_factory=list)
    #: Prefect 2's single schedule.
    schedule: ScheduleEntry | None = None
    work_pool: WorkPool | None = None
    concurrency_limit: int | ConcurrencyLimit | None = None
    enforce_parameter_schema: bool = True
    triggers: list[dict[str, Any]] = Field(default_factory=list)
    build: list[dict[str, Any]] | None = None
    push: list[dict[str, Any]] | None = None
    pull: list[dict[str, Any]] | None = None

    @property
    def queue(self) -> str:
        pool = self.work_pool
        if pool is None:
            return "default"
        return pool.work_queue_name or pool.name or "default"

    @property
    def all_schedules(self) -> list[ScheduleEntry]:
        return [*self.schedules, *([self.schedule] if self.schedule else [])]

    @property
    def limit(self) -> tuple[int | None, str]:
        """(runs at once, what a run over it does: ``enqueue`` or ``cancel``)."""
        given = self.concurrency_limit
        if isinstance(given, ConcurrencyLimit):
            return given.limit, "cancel" if given.collision_strategy == "CANCEL_NEW" else "enqueue"
        return given, "enqueue"


class DeployFile(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = None
    prefect_version: str | None = Field(default=None, alias="prefect-version")
    build: list[dict[str, Any]] | None = None
    push: list[dict[str, Any]] | None = None
    pull: list[dict[str, Any]] | None = None
    deployments: list[DeploymentEntry] = Field(default_factory=list)
    #: Where Prefect's examples keep the anchors (``definitions: {schedules: ...}``).
    definitions: dict[str, Any] | None = None


def find_deploy_file(folder: Path) -> Path | None:
    """The deployment file of ``folder``, if it has one."""
    for name in FILE_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def parse_deploy_file(text: str, source: str) -> DeployFile:
    """The file's deployments; ``UsageError`` naming the key and line of what is wrong."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a mapping with a 'deployments' list is expected")
    try:
        return DeployFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            line = _line_of(root, error["loc"])
            problems.append(f"{source}:{line}: {where}: {error['msg']}")
        raise UsageError("\n".join(problems)) from None


def chosen(found: DeployFile, names: list[str], every: bool, source: str) -> list[DeploymentEntry]:
    """The deployments ``--name`` (``NAME`` or ``flow/NAME``) or ``--all`` picks; the only one
    when the file has one."""
    entries = found.deployments
    if not entries:
        raise UsageError(f"{source}: no deployments in it")
    if every:
        return entries
    if not names:
        if len(entries) == 1:
            return entries
        listed = ", ".join(e.name for e in entries)
        raise UsageError(f"{source} has several deployments ({listed}): pick with --name or --all")
    wanted = {name.rsplit("/", 1)[-1] for name in names}
    picked = [e for e in entries if e.name in wanted]
    missing = wanted - {e.name for e in picked}
    if missing:
        raise UsageError(f"{source}: no deployment named {', '.join(sorted(missing))}")
    return picked


def working_directory(entry: DeploymentEntry, found: DeployFile, folder: Path) -> Path | None:
    """The folder the ``pull`` steps (the deployment's own, else the file's) put the code in,
    if any (``pull_steps.py``: a local repository is cloned now)."""
    return code_folder(_pull(entry, found), folder)


def _pull(entry: DeploymentEntry, found: DeployFile) -> list[dict[str, Any]]:
    return entry.pull if entry.pull is not None else found.pull or []


def notes(entry: DeploymentEntry, found: DeployFile, folder: Path = Path()) -> list[str]:
    """What of the entry is not used here, said once at deploy time."""
    said = []
    if (entry.build if entry.build is not None else found.build) or (
        entry.push if entry.push is not None else found.push
    ):
        said.append("build and push steps skipped: agents run the code from the working folder")
    said.extend(skipped(_pull(entry, found), folder))
    if entry.work_pool is not None and entry.work_pool.job_variables:
        said.append("job_variables skipped: agents take no per-run job settings")
    return said


def _line_of(node: Any, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the YAML node at ``loc`` (the nearest one that exists)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        child = None
        wanted = "prefect-version" if part == "prefect_version" else part
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == wanted:
                    child = value
                    line = key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if part < len(node.value) else None
        if child is not None and isinstance(node, yaml.SequenceNode):
            line = child.start_mark.line + 1
        if child is None:
            return line
        node = child
    return line


__all__ = [
    "DeployFile",
    "DeploymentEntry",
    "chosen",
    "find_deploy_file",
    "notes",
    "parse_deploy_file",
    "working_directory",
]
