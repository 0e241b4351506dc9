"""Task inputs: futures and states passed as arguments resolve to their results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from flowbus.engine.futures import TaskRunFuture
from flowbus.engine.states import State

T = TypeVar("T")


class unmapped(Generic[T]):
    """Pass a value whole to every call of ``.map()`` instead of mapping over it."""

    def __init__(self, value: T) -> None:
        self.value = value


class allow_failure(Generic[T]):
    """Run the downstream task even if this upstream future fails (it receives the exception)."""

    def __init__(self, value: T) -> None:
        self.value = value


@dataclass
class UpstreamFailure:
    task_run_name: str
    state: State


class Resolution:
    """The outcome of resolving a call's inputs: upstream ids, and failures that block it."""

    __slots__ = ("failures", "upstream")

    def __init__(self) -> None:
        self.upstream: list[str] = []
        self.failures: list[UpstreamFailure] = []

    async def value(self, item: Any, tolerate: bool = False) -> Any:
        kind = type(item)
        if kind is TaskRunFuture:
            state = await item.wait_async()
            self.upstream.append(item.task_run_id)
            return self._unwrap(item.task_run.name, state, tolerate)
        if kind is State:
            return self._unwrap("a state", item, tolerate)
        if kind is allow_failure:
            return await self.value(item.value, tolerate=True)
        if kind is unmapped:
            return await self.value(item.value, tolerate)
        if kind is list or kind is tuple or kind is set or kind is frozenset:
            resolved = [await self.value(v, tolerate) for v in item]
            return kind(resolved)
        if kind is dict:
            return {k: await self.value(v, tolerate) for k, v in item.items()}
        return item

    def _unwrap(self, name: str, state: State, tolerate: bool) -> Any:
        if state.is_completed():
            return state.data if state.has_data else None
        if tolerate:
            return state.data if state.has_data else None
        self.failures.append(UpstreamFailure(name, state))
        return None


_PLAIN = (int, float, str, bytes, bool, type(None))


async def resolve_inputs(
    args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: list[Any] | None
) -> tuple[tuple[Any, ...], dict[str, Any], Resolution]:
    """Replace futures and states in the arguments by their results; wait for ``wait_for``."""
    resolution = Resolution()
    if wait_for:
        for item in wait_for:
            await resolution.value(item)
    if args and not all(type(a) in _PLAIN for a in args):
        args = tuple([await resolution.value(a) for a in args])
    if kwargs and not all(type(v) in _PLAIN for v in kwargs.values()):
        kwargs = {k: await resolution.value(v) for k, v in kwargs.items()}
    return args, kwargs, resolution
