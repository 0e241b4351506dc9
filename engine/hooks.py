"""State hooks added by decorator (``@my_task.on_failure``), as Prefect allows: one method
maker for every hook list of tasks and flows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Hook = Callable[..., Any]


def hook_decorator(kind: str, when: str, signature: str) -> Callable[[Any, Hook], Hook]:
    """A method that appends its argument to ``self.<kind>_hooks`` and returns it unchanged."""

    def add(self: Any, fn: Hook) -> Hook:
        getattr(self, f"{kind}_hooks").append(fn)
        return fn

    add.__name__ = kind
    add.__doc__ = f"Add a hook called as ``fn{signature}`` {when}."
    return add
