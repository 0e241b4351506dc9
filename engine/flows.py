"""``@flow``: the function whose call is a recorded flow run, with its tasks and subflows."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar, overload

from flowbus.engine.flow_engine import FlowRunEngine
from flowbus.engine.hooks import Hook, hook_decorator
from flowbus.engine.loops import run_sync
from flowbus.engine.names import generate_run_name, render_name
from flowbus.engine.parameters import ParameterSchema
from flowbus.engine.retries import RetryDelay, delay_list
from flowbus.engine.states import outcome
from flowbus.engine.task_runners import ConcurrentTaskRunner, TaskRunner

P = ParamSpec("P")
R = TypeVar("R")


class Flow(Generic[P, R]):
    """A function run as a flow: each call is a flow run whose states and logs are recorded.

    See ``flow`` for the options.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        version: str | None = None,
        flow_run_name: str | Callable[[], str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: RetryDelay | None = None,
        task_runner: TaskRunner | type[TaskRunner] | None = None,
        description: str | None = None,
        timeout_seconds: float | None = None,
        validate_parameters: bool = True,
        persist_result: bool | None = None,
        log_prints: bool | None = None,
        tags: Iterable[str] | None = None,
        on_completion: Iterable[Callable[..., Any]] | None = None,
        on_failure: Iterable[Callable[..., Any]] | None = None,
        on_cancellation: Iterable[Callable[..., Any]] | None = None,
        on_crashed: Iterable[Callable[..., Any]] | None = None,
        on_running: Iterable[Callable[..., Any]] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError("@flow needs a function")
        self.fn = fn
        self.name = name or fn.__name__.replace("_", "-")
        self.version = version
        self.flow_run_name = flow_run_name
        self.retries = int(retries or 0)
        if self.retries < 0:
            raise ValueError("retries cannot be negative")
        self.retry_delay_seconds = retry_delay_seconds
        self.retry_delays = delay_list(retry_delay_seconds, self.retries)
        if isinstance(task_runner, type):
            task_runner = task_runner()
        self.task_runner: TaskRunner = task_runner or ConcurrentTaskRunner()
        self.description = description or inspect.getdoc(fn)
        self.timeout_seconds = timeout_seconds
        self.should_validate_parameters = validate_parameters
        self.persist_result = persist_result
        self.log_prints = log_prints
        self.tags = list(tags or [])
        self.on_completion_hooks = list(on_completion or [])
        self.on_failure_hooks = list(on_failure or [])
        self.on_cancellation_hooks = list(on_cancellation or [])
        self.on_crashed_hooks = list(on_crashed or [])
        self.on_running_hooks = list(on_running or [])
        self.is_async = inspect.iscoroutinefunction(fn)
        self.parameters = ParameterSchema(fn, self.name)
        self._options = {
            "name": name,
            "version": version,
            "flow_run_name": flow_run_name,
            "retries": retries,
            "retry_delay_seconds": retry_delay_seconds,
            "task_runner": task_runner,
            "description": description,
            "timeout_seconds": timeout_seconds,
            "validate_parameters": validate_parameters,
            "persist_result": persist_result,
            "log_prints": log_prints,
            "tags": tags,
            # The lists themselves: hooks added later by decorator carry over to copies.
            "on_completion": self.on_completion_hooks,
            "on_failure": self.on_failure_hooks,
            "on_cancellation": self.on_cancellation_hooks,
            "on_crashed": self.on_crashed_hooks,
            "on_running": self.on_running_hooks,
        }
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"

    def with_options(self, **options: Any) -> Flow[P, R]:
        """A copy of this flow with some options changed."""
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(f"unknown flow options: {', '.join(sorted(unknown))}")
        return Flow(self.fn, **{**self._options, **options})

    # -- hooks as decorators: ``@my_flow.on_failure`` -----------------------------------------

    on_completion = hook_decorator(
        "on_completion", "when a run completes", "(flow, flow_run, state)"
    )
    on_failure = hook_decorator("on_failure", "when a run fails", "(flow, flow_run, state)")
    on_cancellation = hook_decorator(
        "on_cancellation", "when a run is cancelled", "(flow, flow_run, state)"
    )
    on_crashed = hook_decorator("on_crashed", "when a run crashes", "(flow, flow_run, state)")
    on_running = hook_decorator("on_running", "when an attempt starts", "(flow, flow_run, state)")

    def final_hooks(self, state: Any) -> list[Hook]:
        """The hooks for a run that ended in ``state``."""
        if state.is_completed():
            return self.on_completion_hooks
        if state.is_failed():
            return self.on_failure_hooks
        if state.is_crashed():
            return self.on_crashed_hooks
        if state.is_cancelled():
            return self.on_cancellation_hooks
        return []

    def deploy(self, name: str, **options: Any) -> Any:
        """Record a deployment of this flow, with Prefect 3's options (``flowbus deploy`` does
        the same from a shell): ``work_pool_name``, ``work_queue_name`` (the work queue; or
        ``queue``), ``cron``, ``interval``, ``rrule``, ``timezone``, ``paused``,
        ``concurrency_limit``, ``parameters``, ``description``, ``tags``, and flowbus's
        ``working_dir`` and ``blocks`` (``<type>/<name>`` patterns its runs may load; default
        any). Its entrypoint is this flow's source file (relative to ``working_dir``, default
        the current folder, or the ``source`` of ``from_source``) and function. Prefect's image,
        build, push, ``job_variables``, ``triggers`` and version options are accepted and have
        no effect here. Returns the saved deployment."""
        from flowbus.engine.flow_deploy import IGNORED, deploy_flow

        used = {key: value for key, value in options.items() if key not in IGNORED}
        return deploy_flow(self, name, **used)

    @staticmethod
    def from_source(source: str | Path, entrypoint: str) -> Flow[..., Any]:
        """The flow ``entrypoint`` names in the local folder ``source``; its deployments run
        from that folder (Prefect's ``Flow.from_source``)."""
        from flowbus.engine.flow_deploy import from_source

        return from_source(source, entrypoint)

    def to_deployment(self, name: str | None = None, **options: Any) -> Any:
        """A deployment of this flow for ``flowbus.serve(...)``: name, cron, interval, rrule,
        parameters, tags, description, timezone, queue."""
        from flowbus._serving import to_deployment

        return to_deployment(self, name, **options)

    def serve(self, name: str | None = None, limit: int = 10, **options: Any) -> None:
        """Record a deployment of this flow and run its flow runs in this process until
        Ctrl-C (Prefect's quickest way to deploy). Options as ``to_deployment``: cron,
        interval, rrule, parameters, tags, description, timezone."""
        from flowbus._serving import serve

        serve(self.to_deployment(name, **options), limit=limit)

    def parameters_schema(self) -> dict[str, Any]:
        """The JSON schema of this flow's parameters."""
        return self.parameters.json_schema()

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Validate and coerce named parameters (defaults applied); raise if invalid."""
        bound = self.parameters.bind((), parameters)
        return self.parameters.validate(bound) if self.should_validate_parameters else bound

    def render_run_name(self, parameters: dict[str, Any]) -> str:
        if self.flow_run_name is None:
            return generate_run_name()
        return render_name(self.flow_run_name, parameters, f"flow {self.name!r}")

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(self, *args: Any, return_state: bool, **kwargs: Any) -> Any: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return_state = kwargs.pop("return_state", False)
        bound = self.parameters.bind(args, kwargs)
        parameters = self.parameters.validate(bound) if self.should_validate_parameters else bound
        engine = FlowRunEngine(self, parameters)
        if self.is_async:
            return outcome(
                engine.run(), return_state
            )  # asyncio.run(my_flow()) as with any coroutine
        state = run_sync(engine.run())
        return state if return_state else state.result()


@overload
def flow(__fn: Callable[P, R]) -> Flow[P, R]: ...
@overload
def flow(__fn: None = None, **options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(__fn: Callable[P, R] | None = None, **options: Any) -> Any:
    """Make a function a flow: ``@flow`` or ``@flow(name=..., retries=..., ...)``.

    Options (Prefect's names): name, version, description, tags, flow_run_name, retries,
    retry_delay_seconds, timeout_seconds, validate_parameters, persist_result, log_prints,
    task_runner, on_completion, on_failure, on_cancellation, on_crashed, on_running. Hooks can
    also be added with decorators: ``@my_flow.on_failure``.
    """
    if __fn is not None:
        return Flow(__fn, **options)
    return lambda fn: Flow(fn, **options)


# ``flow.from_source(...)`` as Prefect spells it, besides ``Flow.from_source(...)``.
setattr(flow, "from_source", Flow.from_source)  # noqa: B010
