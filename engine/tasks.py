"""``@task``: a unit of work inside a flow, with retries, timeouts, caching and hooks."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar, overload

from flowbus.engine.cache_policies import (
    DEFAULT,
    NO_CACHE,
    CacheKeyFnPolicy,
    CachePolicy,
    is_no_cache,
)
from flowbus.engine.context import FlowRunContext, TaskRun, flow_run_var, tags_var
from flowbus.engine.errors import UsageError
from flowbus.engine.futures import FutureList, TaskRunFuture
from flowbus.engine.hooks import Hook, hook_decorator
from flowbus.engine.ids import new_id
from flowbus.engine.inputs import unmapped
from flowbus.engine.loops import run_sync
from flowbus.engine.names import render_name
from flowbus.engine.parameters import ParameterSchema
from flowbus.engine.retries import RetryDelay, delay_list
from flowbus.engine.states import outcome
from flowbus.engine.task_alone import call_alone
from flowbus.engine.task_engine import TaskRunEngine

P = ParamSpec("P")
R = TypeVar("R")


class NotSet:
    """The default of options whose absence means something (``cache_policy``)."""


def _hooks(hooks: Iterable[Hook] | None) -> list[Hook]:
    return list(hooks or [])


def _cache_settings(
    cache_key_fn: Callable[..., Any] | None,
    cache_policy: CachePolicy | type[NotSet] | None,
    persist_result: bool | None,
) -> tuple[CachePolicy, bool]:
    """The task's cache policy, and whether it caches at all.

    As in Prefect, caching needs persisted results: ``persist_result=True``, or a policy or
    ``cache_key_fn`` given explicitly (which turns persistence on); ``persist_result=False``
    turns caching off whatever the policy.
    """
    policy: CachePolicy
    if cache_key_fn is not None:
        policy, explicit = CacheKeyFnPolicy(cache_key_fn=cache_key_fn), True
    elif cache_policy is NotSet or cache_policy is None:
        policy, explicit = (DEFAULT if cache_policy is NotSet else NO_CACHE), False
    else:
        assert isinstance(cache_policy, CachePolicy)
        policy, explicit = cache_policy, not is_no_cache(cache_policy)
    persist = explicit if persist_result is None else persist_result
    return policy, bool(persist) and not is_no_cache(policy)


class Task(Generic[P, R]):
    """A function run as a task: called inside a flow it becomes a recorded task run.

    Outside any flow a task is a plain function call. See ``task`` for the options.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        version: str | None = None,
        cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None = None,
        cache_expiration: timedelta | None = None,
        task_run_name: str | Callable[[], str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: RetryDelay | None = None,
        retry_jitter_factor: float | None = None,
        persist_result: bool | None = None,
        result_storage: str | Path | None = None,
        timeout_seconds: float | None = None,
        log_prints: bool | None = None,
        refresh_cache: bool | None = None,
        retry_condition_fn: Callable[..., Any] | None = None,
        on_completion: Iterable[Callable[..., Any]] | None = None,
        on_failure: Iterable[Callable[..., Any]] | None = None,
        cache_policy: CachePolicy | type[NotSet] | None = NotSet,
        on_commit: Iterable[Callable[..., Any]] | None = None,
        on_rollback: Iterable[Callable[..., Any]] | None = None,
        on_running: Iterable[Callable[..., Any]] | None = None,
        replay: bool = True,
    ) -> None:
        if not callable(fn):
            raise TypeError("@task needs a function")
        if retry_jitter_factor is not None and retry_jitter_factor < 0:
            raise ValueError("retry_jitter_factor must be >= 0")
        self.fn = fn
        self.name = name or fn.__name__
        self.description = description or inspect.getdoc(fn)
        self.tags = list(tags or [])
        self.version = version
        self.cache_key_fn = cache_key_fn
        self.cache_expiration = cache_expiration
        self.task_run_name = task_run_name
        self.retries = int(retries or 0)
        if self.retries < 0:
            raise ValueError("retries cannot be negative")
        self.retry_delay_seconds = retry_delay_seconds
        self.retry_delays = delay_list(retry_delay_seconds, self.retries)
        self.retry_jitter_factor = retry_jitter_factor
        self.cache_policy, self.caching = _cache_settings(
            cache_key_fn, cache_policy, persist_result
        )
        self.persist_result = bool(persist_result)
        self.result_path = Path(result_storage).expanduser() if result_storage else None
        self.timeout_seconds = timeout_seconds
        self.log_prints = log_prints
        self.refresh_cache = bool(refresh_cache)
        #: False: a run that executes again runs this task again rather than replay its
        #: recorded result (for a task whose effect must happen on every attempt).
        self.replay = bool(replay)
        self.retry_condition_fn = retry_condition_fn
        self.on_completion_hooks = _hooks(on_completion)
        self.on_failure_hooks = _hooks(on_failure)
        self.on_commit_hooks = _hooks(on_commit)
        self.on_rollback_hooks = _hooks(on_rollback)
        self.on_running_hooks = _hooks(on_running)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.task_key = f"{fn.__module__}.{fn.__qualname__}"
        self.parameters = ParameterSchema(fn, self.name)
        self._options = {
            "name": name,
            "description": description,
            "tags": tags,
            "version": version,
            "cache_key_fn": cache_key_fn,
            "cache_expiration": cache_expiration,
            "task_run_name": task_run_name,
            "retries": retries,
            "retry_delay_seconds": retry_delay_seconds,
            "retry_jitter_factor": retry_jitter_factor,
            "persist_result": persist_result,
            "result_storage": result_storage,
            "timeout_seconds": timeout_seconds,
            "log_prints": log_prints,
            "refresh_cache": refresh_cache,
            "retry_condition_fn": retry_condition_fn,
            # The lists themselves: hooks added later by decorator carry over to copies.
            "on_completion": self.on_completion_hooks,
            "on_failure": self.on_failure_hooks,
            "cache_policy": cache_policy,
            "on_commit": self.on_commit_hooks,
            "on_rollback": self.on_rollback_hooks,
            "on_running": self.on_running_hooks,
            "replay": replay,
        }
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"Task(name={self.name!r})"

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task with some options changed."""
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(f"unknown task options: {', '.join(sorted(unknown))}")
        return Task(self.fn, **{**self._options, **options})

    def render_run_name(self, parameters: dict[str, Any]) -> str:
        assert self.task_run_name is not None
        return render_name(self.task_run_name, parameters, f"task {self.name!r}")

    # -- hooks as decorators: ``@my_task.on_failure`` -----------------------------------------

    on_completion = hook_decorator(
        "on_completion", "when a run completes", "(task, task_run, state)"
    )
    on_failure = hook_decorator(
        "on_failure", "when a run fails for good", "(task, task_run, state)"
    )
    on_running = hook_decorator("on_running", "when an attempt starts", "(task, task_run, state)")
    on_commit = hook_decorator("on_commit", "when the run's transaction commits", "(transaction)")
    on_rollback = hook_decorator(
        "on_rollback", "when the run's transaction rolls back", "(transaction)"
    )

    # -- running ----------------------------------------------------------------------------

    def _engine(
        self,
        flow_ctx: FlowRunContext,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wait_for: list[Any] | None,
        map_index: int | None = None,
    ) -> TaskRunEngine:
        index, position = flow_ctx.next_index(self.task_key)
        tags = self.tags
        extra = tags_var.get()
        if extra:  # inside ``with tags(...)``
            tags = list(dict.fromkeys([*tags, *extra]))
        task_run = TaskRun(
            new_id(),
            f"{self.name}-{index}",
            self.task_key,
            flow_ctx.flow_run.id,
            tags,
            map_index,
            position=position,
        )
        return TaskRunEngine(self, task_run, flow_ctx, args, kwargs, wait_for)

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(self, *args: Any, return_state: bool, **kwargs: Any) -> Any: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        flow_ctx = flow_run_var.get()
        if flow_ctx is None:
            kwargs.pop("return_state", None)
            kwargs.pop("wait_for", None)
            return call_alone(self, args, kwargs)
        return_state = kwargs.pop("return_state", False)
        wait_for = kwargs.pop("wait_for", None)
        engine = self._engine(flow_ctx, args, kwargs, wait_for)
        if self.is_async:  # an async task is awaited, as any coroutine
            return outcome(engine.run(), return_state, lambda: engine.returned_a_state)
        state = run_sync(engine.run())
        # A state the task returned comes back as it is, when it is not a value's (Prefect).
        handed_back = engine.returned_a_state and not state.is_completed()
        return state if return_state or handed_back else state.result()

    def submit(self, *args: Any, **kwargs: Any) -> TaskRunFuture[R]:
        """Start a task run concurrently; returns its future."""
        flow_ctx = self._flow_context("submit")
        kwargs.pop("return_state", None)
        wait_for = kwargs.pop("wait_for", None)
        engine = self._engine(flow_ctx, args, kwargs, wait_for)
        return self._start(flow_ctx, engine)

    def _start(self, flow_ctx: FlowRunContext, engine: TaskRunEngine) -> TaskRunFuture[R]:
        backing = flow_ctx.task_runner.submit(engine.run(), self.is_async)
        future: TaskRunFuture[R] = TaskRunFuture(engine.task_run, backing)
        flow_ctx.submitted.append(future)
        return future

    def map(self, *args: Any, **kwargs: Any) -> FutureList[R]:
        """Submit one task run per element of the iterable arguments (``unmapped`` ones whole)."""
        flow_ctx = self._flow_context("map")
        kwargs.pop("return_state", None)
        wait_for = kwargs.pop("wait_for", None)
        calls = _mapped_calls(self.name, args, kwargs)
        engines = [
            self._engine(flow_ctx, call_args, call_kwargs, wait_for, index)
            for index, (call_args, call_kwargs) in enumerate(calls)
        ]
        backings = flow_ctx.task_runner.submit_many([e.run() for e in engines], self.is_async)
        futures: FutureList[R] = FutureList(
            TaskRunFuture(engine.task_run, backing)
            for engine, backing in zip(engines, backings, strict=True)
        )
        flow_ctx.submitted.extend(futures)
        return futures

    def _flow_context(self, method: str) -> FlowRunContext:
        flow_ctx = flow_run_var.get()
        if flow_ctx is None:
            raise UsageError(f"{self.name}.{method}() works inside a flow; call the task directly")
        return flow_ctx


_STATIC = (str, bytes, dict, unmapped)


def _mapped_calls(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Expand map arguments into one (args, kwargs) per call."""
    mapped: dict[int | str, list[Any]] = {}
    items: list[tuple[int | str, Any]] = [*enumerate(args), *kwargs.items()]
    for key, value in items:
        if isinstance(value, _STATIC) or not isinstance(value, Iterable):
            continue
        mapped[key] = list(value)
    if not mapped:
        raise UsageError(f"{name}.map() needs at least one iterable argument")
    lengths = {key: len(values) for key, values in mapped.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{key}: {length}" for key, length in lengths.items())
        raise UsageError(f"{name}.map() got iterables of different lengths ({detail})")
    count = next(iter(lengths.values()))
    calls = []
    for i in range(count):
        call_args = tuple(mapped[k][i] if k in mapped else _static(v) for k, v in enumerate(args))
        call_kwargs = {k: mapped[k][i] if k in mapped else _static(v) for k, v in kwargs.items()}
        calls.append((call_args, call_kwargs))
    return calls


def _static(value: Any) -> Any:
    return value.value if isinstance(value, unmapped) else value


@overload
def task(__fn: Callable[P, R]) -> Task[P, R]: ...
@overload
def task(__fn: None = None, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(__fn: Callable[P, R] | None = None, **options: Any) -> Any:
    """Make a function a task: ``@task`` or ``@task(retries=3, retry_delay_seconds=5, ...)``.

    Options (Prefect's names): name, description, tags, version, retries, retry_delay_seconds
    (a number, a list, or ``exponential_backoff(factor)``), retry_jitter_factor,
    retry_condition_fn, timeout_seconds, log_prints, task_run_name, cache_key_fn,
    cache_expiration, refresh_cache, cache_policy, persist_result, result_storage,
    on_completion, on_failure, on_running, on_commit, on_rollback. Hooks can also be added with
    decorators: ``@my_task.on_failure``. flowbus adds ``replay`` (default True): False makes a
    flow run that executes again (a crash, a retry, a resume) run the task again rather than
    return the result it recorded before.
    """
    if __fn is not None:
        return Task(__fn, **options)
    return lambda fn: Task(fn, **options)
