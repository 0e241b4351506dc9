"""``flow.deploy(...)`` with Prefect 3's signature, and ``Flow.from_source(...)``.

A Prefect user deploys from Python with ``my_flow.deploy("nightly", work_pool_name="local",
cron="0 6 * * *", parameters={...})``, or, for code in another folder,
``flow.from_source(source="path/to/project", entrypoint="etl.py:etl_flow").deploy(...)``. Here
the work queue is ``work_queue_name``, else ``work_pool_name``, else ``queue`` (flowbus's own
name); schedules, tags, parameters, description and a concurrency limit are recorded as
``flowbus deploy`` records them; ``triggers`` (``DeploymentEventTrigger``) replace the
deployment's triggers. Image, build and push options and ``job_variables`` are accepted and
have no effect here (agents run the code from its folder). With a profile (``flowbus login``)
the deployment is recorded through the server's API, as the CLI does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowbus.engine.errors import UsageError
from flowbus.engine.loops import run_sync

if TYPE_CHECKING:
    from flowbus.engine.flows import Flow
    from flowbus.engine.schedules import DeploymentSchedule
    from flowbus.engine.store import EventStore


def _configured_store() -> EventStore:
    from flowbus.engine.store import store_from_url

    return store_from_url()


#: Where ``flow.deploy`` records: the configured store, or (set by ``flowbus``) the server of
#: the active profile.
store_factory: Callable[[], EventStore] = _configured_store

#: Where ``from_source`` found a flow: its deployments' working folder.
SOURCE_ATTRIBUTE = "_flowbus_source"
#: Prefect's options that mean nothing here (no images, no workers' job settings): accepted
#: so that a Prefect script runs unchanged.
IGNORED = frozenset({"image", "build", "push", "job_variables", "version",
                     "version_type", "entrypoint_type",
                     "print_next_steps", "ignore_warnings"})  # fmt: skip


def from_source(source: str | Path, entrypoint: str) -> Flow[..., Any]:
    """The flow ``entrypoint`` names in the folder ``source`` (a local path: code in a
    repository is cloned where the agents run before it is deployed)."""
    from flowbus.engine.entrypoints import load_flow

    text = str(source)
    if "://" in text or text.startswith("git@"):
        raise UsageError(
            f"from_source({text!r}): give a local folder; agents run the code from a folder "
            "on their hosts (clone the repository there first)"
        )
    folder = Path(text).expanduser().resolve()
    flow = load_flow(entrypoint, folder)
    setattr(flow, SOURCE_ATTRIBUTE, (folder, entrypoint))
    return flow


def deploy_flow(
    flow: Flow[..., Any],
    name: str,
    *,
    work_pool_name: str | None = None,
    work_queue_name: str | None = None,
    queue: str = "default",
    cron: str | Iterable[str] | None = None,
    interval: float | timedelta | Iterable[float | timedelta] | None = None,
    rrule: str | Iterable[str] | None = None,
    timezone: str = "UTC",
    paused: bool | None = None,
    concurrency_limit: int | None = None,
    parameters: dict[str, Any] | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
    working_dir: str | None = None,
    blocks: list[str] | None = None,
    schedules: Any = None,
    triggers: list[Any] | None = None,
    enforce_parameter_schema: bool = True,
) -> Any:
    """Record the deployment (and its triggers); returns it as saved (``DeploymentView``)."""
    if schedules is not None:
        raise UsageError("flow.deploy(schedules=...): give cron=, interval= or rrule= here")
    from flowbus.engine.deployment_triggers import read_triggers, replace_triggers
    from flowbus.engine.deployments import (
        build_deployment,
        enforcing,
        entrypoint_of,
        save_deployment,
    )

    wanted_triggers = read_triggers(triggers)

    source = getattr(flow, SOURCE_ATTRIBUTE, None)
    if source is not None and working_dir is None:
        base, entrypoint = source
    else:
        base = Path(working_dir or Path.cwd())
        entrypoint = entrypoint_of(flow, base)
    chosen_queue = work_queue_name or work_pool_name or queue
    spec = build_deployment(flow, name, entrypoint, base, chosen_queue, parameters, tags,
                            description)  # fmt: skip
    schedules = _schedules(cron, interval, rrule, timezone, active=not paused)
    missing = sorted(set(spec.parameter_schema.get("required", [])) - set(spec.parameters))
    if schedules and missing:
        raise UsageError(f"a scheduled run has nobody to give it {', '.join(missing)}: "
                         "give them in parameters=")  # fmt: skip
    spec = dataclasses.replace(spec, schedules=schedules, concurrency_limit=concurrency_limit,
                               blocks=None if blocks is None else list(blocks))  # fmt: skip
    spec = enforcing(spec, enforce_parameter_schema)

    async def save() -> Any:
        store = store_factory()
        await store.open()
        try:
            saved = await save_deployment(store, spec)
            if triggers is not None:
                await replace_triggers(store, saved.name, wanted_triggers)
            return saved
        finally:
            await store.close()

    return run_sync(save())


def _schedules(
    cron: Any, interval: Any, rrule: Any, timezone: str, active: bool
) -> list[DeploymentSchedule]:
    from flowbus.engine.schedules import DeploymentSchedule, schedule_rule

    rules = [
        *(schedule_rule(cron=c, timezone=timezone) for c in _many(cron)),
        *(schedule_rule(interval=i, timezone=timezone) for i in _many(interval)),
        *(schedule_rule(rrule=r, timezone=timezone) for r in _many(rrule)),
    ]
    return [DeploymentSchedule(id=i + 1, schedule=rule, active=active)
            for i, rule in enumerate(rules)]  # fmt: skip


def _many(given: Any) -> list[Any]:
    if given is None:
        return []
    if isinstance(given, (str, int, float, timedelta)):
        return [given]
    return list(given)


__all__ = ["IGNORED", "deploy_flow", "from_source"]
