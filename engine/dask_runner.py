"""``DaskTaskRunner``: task runs' functions on a Dask cluster, everything else of them here.

Prefect's arguments: ``address`` of a running scheduler, or a cluster this runner makes for
the flow run and shuts down at its end (``cluster_class``, a class or an import path, default
``distributed.LocalCluster``; ``cluster_kwargs``; ``adapt_kwargs`` for ``cluster.adapt``) and
``client_kwargs`` for ``distributed.Client``. With none of them, ``FLOWBUS_DASK_ADDRESS`` (an
agent's setting: the cluster its runs use) or else a temporary local cluster.

Each call goes to Dask as one task (``engine/remote_calls.py``, ``engine/remote_runner.py``),
sent by an asynchronous Dask client on flowbus's background loop. Each result is released as
soon as it is read: the scheduler forgets the task, and its memory stays flat from run to run.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import uuid
from typing import Any

import cloudpickle

from flowbus.engine.errors import UsageError
from flowbus.engine.remote_calls import RemoteCall, call_remotely, pickled_by_value
from flowbus.engine.remote_runner import MAX_IN_FLIGHT, RemoteTaskRunner
from flowbus.engine.task_runners import TaskRunner


def _cluster_class(given: Any) -> Any:
    """A cluster class from a class or an import path (``"dask_jobqueue.SLURMCluster"``)."""
    if given is None:
        from distributed import LocalCluster

        return LocalCluster
    if isinstance(given, str):
        module, _, name = given.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise UsageError(f"cluster_class {given!r} cannot be imported: {exc}") from exc
    return given


class DaskTaskRunner(RemoteTaskRunner):
    """Run task runs' functions on Dask (``pip install 'flowbus[dask]'``)."""

    def __init__(
        self,
        address: str | None = None,
        cluster_class: Any = None,
        cluster_kwargs: dict[str, Any] | None = None,
        adapt_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        super().__init__(max_in_flight)
        if address is not None and (cluster_class is not None or cluster_kwargs):
            raise UsageError("DaskTaskRunner takes an address or a cluster to make, not both")
        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            raise UsageError("DaskTaskRunner needs Dask: pip install 'flowbus[dask]'") from exc
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.adapt_kwargs = dict(adapt_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self._client: Any = None
        self._cluster: Any = None

    def duplicate(self) -> TaskRunner:
        return DaskTaskRunner(
            self.address, self.cluster_class, self.cluster_kwargs, self.adapt_kwargs,
            self.client_kwargs, self.max_in_flight,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"DaskTaskRunner(address={self.address!r}, cluster_class={self.cluster_class!r})"

    async def _connect(self) -> None:
        from distributed import Client

        address = self.address
        if address is None and self.cluster_class is None and not self.cluster_kwargs:
            address = os.environ.get("FLOWBUS_DASK_ADDRESS") or None
        if address is None:
            kwargs = dict(self.cluster_kwargs)
            cls = _cluster_class(self.cluster_class)
            if self.cluster_class is None:  # a local cluster: loopback only, any free port
                kwargs.setdefault("host", "127.0.0.1")
                kwargs.setdefault("dashboard_address", "127.0.0.1:0")
            self._cluster = await cls(asynchronous=True, **kwargs)
            if self.adapt_kwargs:
                adapted = self._cluster.adapt(**self.adapt_kwargs)
                if asyncio.iscoroutine(adapted):
                    await adapted
            address = self._cluster
        self._client = await Client(address, asynchronous=True, **self.client_kwargs)

    def _send(self, call: RemoteCall) -> Any:
        pickled_by_value(call.fn, cloudpickle)
        # One task group per task (not per task run: the scheduler keeps every group it saw),
        # each attempt a key of its own.
        key = f"{call.task.name}-{uuid.uuid4().hex}"
        return self._client.submit(call_remotely, call, pure=False, key=key)

    async def _cancel(self, sent: Any) -> None:
        await self._client.cancel(sent)

    def _done(self, sent: Any) -> None:
        sent.release()

    async def _disconnect(self) -> None:
        client, cluster, self._client, self._cluster = self._client, self._cluster, None, None
        if client is not None:
            await client.close()
        if cluster is not None:
            await cluster.close()


__all__ = ["DaskTaskRunner"]
