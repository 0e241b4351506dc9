"""What prefect-dask users import, under flowbus: ``from prefect_dask import DaskTaskRunner``
becomes ``from flowbus.prefect_dask import DaskTaskRunner``.

``get_dask_client`` / ``get_async_dask_client`` give a task running on a Dask worker a client
of its cluster (``distributed.worker_client``), to submit work of its own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from flowbus.engine.dask_runner import DaskTaskRunner


@contextlib.contextmanager
def get_dask_client(**client_kwargs: Any) -> Iterator[Any]:
    """Inside a task on a Dask worker: a client of the worker's cluster."""
    from distributed import worker_client

    with worker_client(**client_kwargs) as client:
        yield client


@contextlib.asynccontextmanager
async def get_async_dask_client(**client_kwargs: Any) -> AsyncIterator[Any]:
    """Inside an async task on a Dask worker: an asynchronous client of its cluster."""
    from distributed import Client, get_worker

    async with Client(get_worker().scheduler.address, asynchronous=True,
                      **client_kwargs) as client:  # fmt: skip
        yield client


__all__ = ["DaskTaskRunner", "get_async_dask_client", "get_dask_client"]
