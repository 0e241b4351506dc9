"""Cache policies: how a task run's cache key is computed (Prefect's ``prefect.cache_policies``).

A policy turns a task call into a key; a later call with the same key returns the stored result
as a Cached state instead of running. Policies combine with ``+`` (every part must match) and
``INPUTS - "name"`` leaves a parameter out of the key.

    @task(cache_policy=INPUTS + TASK_SOURCE, cache_expiration=timedelta(hours=1))
    def fetch(url: str, debug: bool = False) -> bytes: ...

    @task(cache_policy=(INPUTS - "debug") + TASK_SOURCE)
    def fetch_quietly(url: str, debug: bool = False) -> bytes: ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flowbus.engine.caching import stable_hash


@dataclass(frozen=True)
class CachePolicy:
    """Base of every policy: ``compute_key`` gives a key, or None for "do not cache".

    ``key_storage`` is the folder where results are kept under their keys (default: the task's
    ``result_storage``, else ``$FLOWBUS_RESULTS_PATH``).
    """

    key_storage: str | Path | None = None
    isolation_level: Any = None

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        raise NotImplementedError

    def configure(
        self,
        key_storage: str | Path | None = None,
        lock_manager: Any = None,
        isolation_level: Any = None,
    ) -> CachePolicy:
        """A copy of this policy that keeps its results in ``key_storage``."""
        return replace(
            self,
            key_storage=key_storage if key_storage is not None else self.key_storage,
            isolation_level=isolation_level
            if isolation_level is not None
            else self.isolation_level,
        )

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        if isinstance(other, _NoCache):
            return self
        mine = self.policies if isinstance(self, CompoundCachePolicy) else [self]
        theirs = other.policies if isinstance(other, CompoundCachePolicy) else [other]
        return CompoundCachePolicy(
            policies=[*mine, *theirs], key_storage=self.key_storage or other.key_storage
        )

    def __sub__(self, name: str) -> CachePolicy:
        """Leave parameter ``name`` out of the key (only ``Inputs`` policies use inputs)."""
        if not isinstance(name, str):
            raise TypeError("only parameter names (strings) can be taken from a cache policy")
        return self


@dataclass(frozen=True)
class _NoCache(CachePolicy):
    def compute_key(self, task_ctx: Any, inputs: Any, flow_parameters: Any, **kw: Any) -> None:
        return None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        return other

    def __repr__(self) -> str:
        return "NO_CACHE"


@dataclass(frozen=True)
class Inputs(CachePolicy):
    """The task's inputs (not the task itself: two tasks given equal inputs share a key)."""

    exclude: tuple[str, ...] = ()

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: Any, **kw: Any
    ) -> str | None:
        kept = {k: v for k, v in (inputs or {}).items() if k not in self.exclude}
        return stable_hash(kept)

    def __sub__(self, name: str) -> CachePolicy:
        super().__sub__(name)
        return replace(self, exclude=(*self.exclude, name))

    def __repr__(self) -> str:
        return f"INPUTS - {list(self.exclude)}" if self.exclude else "INPUTS"


_SOURCES: dict[Callable[..., Any], str | None] = {}


def _source_hash(fn: Callable[..., Any]) -> str | None:
    if fn not in _SOURCES:  # reading a file per call would cost more than the task
        try:
            source: Any = inspect.getsource(fn)
        except (OSError, TypeError):  # defined in a REPL: its bytecode is the next best thing
            source = getattr(getattr(fn, "__code__", None), "co_code", repr(fn))
        _SOURCES[fn] = stable_hash(source)
    return _SOURCES[fn]


@dataclass(frozen=True)
class TaskSource(CachePolicy):
    """The task function's source code: editing it invalidates its cache."""

    def compute_key(self, task_ctx: Any, inputs: Any, flow_parameters: Any, **kw: Any) -> Any:
        return _source_hash(task_ctx.task.fn) if task_ctx is not None else None

    def __repr__(self) -> str:
        return "TASK_SOURCE"


@dataclass(frozen=True)
class FlowParameters(CachePolicy):
    """The parameters of the flow run the task runs in."""

    def compute_key(
        self, task_ctx: Any, inputs: Any, flow_parameters: dict[str, Any], **kw: Any
    ) -> str | None:
        return stable_hash(flow_parameters or {})

    def __repr__(self) -> str:
        return "FLOW_PARAMETERS"


@dataclass(frozen=True)
class RunId(CachePolicy):
    """The flow run's id: a result is reused within one flow run only."""

    def compute_key(self, task_ctx: Any, inputs: Any, flow_parameters: Any, **kw: Any) -> Any:
        if task_ctx is None:
            return None
        return task_ctx.task_run.flow_run_id or task_ctx.task_run.id

    def __repr__(self) -> str:
        return "RUN_ID"


@dataclass(frozen=True)
class CacheKeyFnPolicy(CachePolicy):
    """A ``cache_key_fn(context, parameters)`` as a policy."""

    cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None = None

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: Any, **kw: Any
    ) -> str | None:
        if self.cache_key_fn is None:
            return None
        key = self.cache_key_fn(task_ctx, inputs)
        return None if key is None else str(key)


@dataclass(frozen=True)
class CompoundCachePolicy(CachePolicy):
    """Several policies at once: the key changes when any part does."""

    policies: list[CachePolicy] = field(default_factory=list)

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kw: Any
    ) -> str | None:
        keys = []
        for policy in self.policies:
            key = policy.compute_key(task_ctx, inputs, flow_parameters, **kw)
            if key is not None:
                keys.append(key)
        return stable_hash(*keys) if keys else None

    def __sub__(self, name: str) -> CachePolicy:
        super().__sub__(name)
        return replace(self, policies=[policy - name for policy in self.policies])

    def __repr__(self) -> str:
        return " + ".join(repr(policy) for policy in self.policies)


NO_CACHE: CachePolicy = _NoCache()
INPUTS: CachePolicy = Inputs()
TASK_SOURCE: CachePolicy = TaskSource()
FLOW_PARAMETERS: CachePolicy = FlowParameters()
RUN_ID: CachePolicy = RunId()
#: What a task with ``persist_result=True`` and no policy of its own uses.
DEFAULT: CachePolicy = INPUTS + TASK_SOURCE + RUN_ID


def is_no_cache(policy: CachePolicy | None) -> bool:
    return policy is None or isinstance(policy, _NoCache)
