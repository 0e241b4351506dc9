"""Tasks a daemon starts and does not await where it starts them (a request answered in a task
of its own, a run released when its timer fires, waiters told of their grant)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class BackgroundTasks:
    """Keeps such tasks referenced until they end (the event loop holds only weak references to
    tasks: an unreferenced one can vanish mid-flight), and waits for them when the daemon
    closes."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109 - a bound on closing
        """Let the tasks under way finish, for at most ``timeout`` seconds."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
