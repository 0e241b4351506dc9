"""Deployments: a named way to run a flow (entrypoint, work queue, default parameters), recorded
as ``deployment.saved`` events in a stream of its own, whose id derives from the name."""

from __future__ import annotations

import dataclasses
import inspect
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from flowbus.engine.actors import current_actor
from flowbus.engine.entrypoints import code_hash, entrypoint_file
from flowbus.engine.errors import ParameterTypeError, SequenceError, UsageError
from flowbus.engine.event_types import EventType
from flowbus.engine.flows import Flow
from flowbus.engine.records import make_record
from flowbus.engine.schedules import CatchUp, DeploymentSchedule, Overlap
from flowbus.engine.store import DeploymentView, EventStore

#: Deployment stream ids are UUIDv5 of their "flow/deployment" name in this namespace.
NAMESPACE = uuid.UUID("6f1c2d0e-5b7a-4c1e-9a57-6c6f77627573")
#: Queue names become NATS subject tokens: letters, digits, "-" and "_".
_QUEUE = re.compile(r"[A-Za-z0-9_-]+")


#: The envelope of an event (what ``make_record`` adds to its fields).
ENVELOPE_FIELDS = frozenset({"schema_version", "id", "stream_id", "seq", "occurred", "type"})


def deployment_id(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


#: A deployment's crash-recovery budget unless it says otherwise (``--crash-retries``).
DEFAULT_CRASH_RETRIES = 3


@dataclass(frozen=True)
class DeploymentSpec:
    """What ``save_deployment`` records."""

    flow_name: str
    deployment_name: str
    entrypoint: str
    working_dir: str
    queue: str = "default"
    parameters: dict[str, Any] = field(default_factory=dict)
    parameter_schema: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    description: str | None = None
    retries: int = 0
    #: How often a run whose agent or process died is queued again before it ends Crashed
    #: (apart from the flow's own retries; 0: a crash is final, as in Prefect).
    crash_retries: int = DEFAULT_CRASH_RETRIES
    schedules: list[DeploymentSchedule] = field(default_factory=list)
    catchup: CatchUp = "latest"
    overlap: Overlap = "allow"
    concurrency_limit: int | None = None
    collision: str = "enqueue"
    #: The SHA-256 of the entrypoint's file when it was deployed (None if not found).
    entrypoint_hash: str | None = None
    #: The blocks its runs may load on an agent: ``<type>/<name>`` patterns (``*``
    #: wildcards); None: any.
    blocks: list[str] | None = None

    @property
    def name(self) -> str:
        return f"{self.flow_name}/{self.deployment_name}"


#: In a deployment's parameter schema, ``false``: submissions are not checked against it (Prefect's
#: ``enforce_parameter_schema: false``); the flow still checks its parameters when it runs.
NOT_ENFORCED = "x-flowbus-enforce"


def enforcing(spec: DeploymentSpec, enforce: bool) -> DeploymentSpec:
    """``spec`` whose submissions are checked against its schema (``enforce``) or not."""
    schema = {k: v for k, v in spec.parameter_schema.items() if k != NOT_ENFORCED}
    if not enforce:
        schema[NOT_ENFORCED] = False
    return dataclasses.replace(spec, parameter_schema=schema)


def build_deployment(
    flow: Flow[..., Any],
    name: str,
    entrypoint: str,
    working_dir: str | Path,
    queue: str = "default",
    parameters: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    description: str | None = None,
    crash_retries: int = DEFAULT_CRASH_RETRIES,
) -> DeploymentSpec:
    """Check a deployment of ``flow`` and its default parameters; nothing is recorded yet."""
    if not name or "/" in name:
        raise UsageError(f"deployment name {name!r} must be non-empty and without '/'")
    if crash_retries < 0:
        raise UsageError(f"crash retries must be 0 or more, not {crash_retries}")
    if not _QUEUE.fullmatch(queue):
        raise UsageError(f"queue name {queue!r} may hold only letters, digits, '-' and '_'")
    defaults = flow.parameters.validate_partial(parameters or {})
    for key, value in defaults.items():
        try:
            orjson.dumps(value)
        except TypeError as exc:
            raise ParameterTypeError(
                flow.name, [{"loc": (key,), "msg": f"a deployment default must be JSON: {exc}"}]
            ) from exc
    return DeploymentSpec(
        flow_name=flow.name,
        deployment_name=name,
        entrypoint=entrypoint,
        working_dir=str(Path(working_dir).resolve()),
        queue=queue,
        parameters=orjson.loads(orjson.dumps(defaults)),
        parameter_schema=flow.parameters_schema(),
        tags=list(tags or []),
        description=description or flow.description,
        retries=flow.retries,
        crash_retries=crash_retries,
        entrypoint_hash=_hash_of(entrypoint, working_dir),
    )


def _hash_of(entrypoint: str, working_dir: str | Path) -> str | None:
    path = entrypoint_file(entrypoint, working_dir)
    return code_hash(path) if path is not None else None


async def save_deployment(store: EventStore, spec: DeploymentSpec) -> DeploymentView:
    """Record ``spec`` as the next ``deployment.saved`` event of its stream."""
    stream = deployment_id(spec.name)
    fields = {
        "name": spec.name,
        "flow_name": spec.flow_name,
        "deployment_name": spec.deployment_name,
        "entrypoint": spec.entrypoint,
        "working_dir": spec.working_dir,
        "queue": spec.queue,
        "parameters": spec.parameters,
        "parameter_schema": spec.parameter_schema,
        "tags": spec.tags,
        "description": spec.description,
        "retries": spec.retries,
        "crash_retries": spec.crash_retries,
        "schedules": [s.model_dump(mode="json") for s in spec.schedules],
        "catchup": spec.catchup,
        "overlap": spec.overlap,
        "concurrency_limit": spec.concurrency_limit,
        "collision": spec.collision,
        "entrypoint_hash": spec.entrypoint_hash,
        "blocks": spec.blocks,
    }
    actor = current_actor()
    if actor:
        fields["actor"] = actor
    await store.append_next(stream, EventType.DEPLOYMENT_SAVED, fields)
    saved = await store.get_deployment(spec.name)
    assert saved is not None
    return saved


async def redefine(
    store: EventStore, name: str, change: Callable[[dict[str, Any]], dict[str, Any]]
) -> DeploymentView:
    """Record a deployment again with ``change`` applied to its latest definition's fields (to
    pause a schedule, say): a new version of it, in its own stream like any other."""
    stream = deployment_id(name)
    for _ in range(3):  # another process may redefine it at the same moment
        events = await store.read_stream(stream)
        if not events:
            raise UsageError(f"no deployment named {name!r} (names are flow-name/deployment-name)")
        last = events[-1]
        fields = {k: v for k, v in last.data.items() if k not in ENVELOPE_FIELDS}
        try:
            changed = change(fields)
            changed.pop("actor", None)  # who made this version, not the last one
            if current_actor():
                changed["actor"] = current_actor()
            await store.append([make_record(stream, last.seq + 1, last.type, changed)])
            break
        except SequenceError:
            continue
    saved = await store.get_deployment(name)
    assert saved is not None
    return saved


async def set_schedules_active(
    store: EventStore, name: str, schedule_id: int | None, active: bool
) -> DeploymentView:
    """Pause (``active=False``) or resume one schedule of a deployment, or all of them."""

    def change(fields: dict[str, Any]) -> dict[str, Any]:
        schedules = fields.get("schedules") or []
        ids = [s["id"] for s in schedules]
        if not schedules:
            raise UsageError(f"{name} has no schedules")
        if schedule_id is not None and schedule_id not in ids:
            raise UsageError(f"{name} has no schedule {schedule_id} (it has: {ids})")
        fields["schedules"] = [
            {**s, "active": active} if schedule_id in (None, s["id"]) else s for s in schedules
        ]
        return fields

    return await redefine(store, name, change)


def entrypoint_of(flow: Flow[..., Any], working_dir: Path) -> str:
    """``path/to/file.py:function`` of a flow, relative to ``working_dir`` when inside it."""
    source = inspect.getsourcefile(flow.fn)
    if source is None:
        raise UsageError(f"flow {flow.name!r} has no source file to deploy from")
    path = Path(source).resolve()
    try:
        shown = str(path.relative_to(working_dir.resolve()))
    except ValueError:
        shown = str(path)
    return f"{shown}:{flow.fn.__name__}"
