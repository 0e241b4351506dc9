"""``RayTaskRunner``: task runs' functions on Ray, everything else of them here.

Prefect's arguments: ``address`` of a Ray cluster (``ray://head:10001``, or ``auto``) and
``init_kwargs`` for ``ray.init``. Without an address, ``FLOWBUS_RAY_ADDRESS`` (an agent's
setting), else a local Ray started for the flow run on this machine (loopback only) and shut
down at its end. Ray is one per process: flow runs under way in one agent share its
connection, which is let go of when the last of them ends.

Each call is one Ray task (``engine/remote_calls.py``, ``engine/remote_runner.py``); at most
``max_in_flight`` are with Ray at once, so a map of 15,000 tasks does not hang.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from flowbus.engine.errors import UsageError
from flowbus.engine.remote_calls import RemoteCall, call_remotely, pickled_by_value
from flowbus.engine.remote_runner import MAX_IN_FLIGHT, RemoteTaskRunner
from flowbus.engine.task_runners import TaskRunner

#: Ray's options for the tasks submitted inside ``remote_options(...)``.
_options: ContextVar[dict[str, Any]] = ContextVar("flowbus_ray_options", default={})  # noqa: B039
_users = 0
_users_lock = threading.Lock()
_remote_call: Any = None


class RayTaskRunner(RemoteTaskRunner):
    """Run task runs' functions on Ray (``pip install 'flowbus[ray]'``)."""

    def __init__(
        self,
        address: str | None = None,
        init_kwargs: dict[str, Any] | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        super().__init__(max_in_flight)
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise UsageError("RayTaskRunner needs Ray: pip install 'flowbus[ray]'") from exc
        self.address = address
        self.init_kwargs = dict(init_kwargs or {})

    def duplicate(self) -> TaskRunner:
        return RayTaskRunner(self.address, self.init_kwargs, self.max_in_flight)

    def __repr__(self) -> str:
        return f"RayTaskRunner(address={self.address!r})"

    async def _connect(self) -> None:
        global _users, _remote_call
        import ray

        with _users_lock:
            if not ray.is_initialized():
                address = self.address or os.environ.get("FLOWBUS_RAY_ADDRESS") or None
                kwargs = {"include_dashboard": False, "log_to_driver": True, **self.init_kwargs}
                if address is None:  # a local Ray: this machine only
                    kwargs.setdefault("_node_ip_address", "127.0.0.1")
                ray.init(address=address, **kwargs)
            if _remote_call is None:
                _remote_call = ray.remote(call_remotely)
            _users += 1

    def _send(self, call: RemoteCall) -> Any:
        from ray import cloudpickle as ray_cloudpickle

        pickled_by_value(call.fn, ray_cloudpickle)
        options = _options.get()
        return (_remote_call.options(**options) if options else _remote_call).remote(call)

    async def _cancel(self, sent: Any) -> None:
        import ray

        ray.cancel(sent)

    async def _disconnect(self) -> None:
        global _users
        import ray

        with _users_lock:
            _users -= 1
            if _users == 0 and ray.is_initialized():
                ray.shutdown()


@contextlib.contextmanager
def remote_options(**options: Any) -> Iterator[None]:
    """Ray's options (``num_cpus=2``, ``num_gpus=1``, ``resources={...}``) for the task runs
    submitted inside the block, as prefect-ray's ``remote_options``."""
    token = _options.set({**_options.get(), **options})
    try:
        yield
    finally:
        _options.reset(token)


__all__ = ["RayTaskRunner", "remote_options"]
