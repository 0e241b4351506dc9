"""The peer of bench/vs_celery.py: the same three-step flow as a Celery task, a prefork worker,
Redis as broker and result backend (the server on 127.0.0.1:6379 these machines run; its
database 13, flushed first). Celery is a bench-only extra: ``pip install -e '.[bench]'``.

Run as the worker's app (``celery -A celery_peer worker``) and imported by the driver.
"""

from __future__ import annotations

import os

from celery import Celery

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")

app = Celery("celery_peer", broker=REDIS, backend=REDIS)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
)


def step(x: int) -> int:
    return x + 1


@app.task(name="step")
def step_task(x: int) -> int:
    """One step as a task of its own: chained three times, the flow's shape."""
    return step(x)


@app.task(name="three_tasks")
def three_tasks(x: int = 0) -> int:
    """Three trivial steps in a row, as bench/b4_flows.py's flow (Celery has no tasks within a
    task: each would be a message of its own, which would only slow it down)."""
    return step(step(step(x)))
