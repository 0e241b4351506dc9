"""Operations: ``GET /metrics`` (Prometheus text format), ``/healthz`` and ``/readyz``.

Counters and the latency histogram are kept in the process by the parts that see the events
(the recorder, the janitor, the dead-letter helper: ``flowbus.agents.telemetry``), so each
orchestrator reports what it did (the leader records; sum over orchestrators). Gauges are read
when scraped: runs by state from the store, queue depth and runs in flight per queue and agent
slots from the orchestrators, dead letters from their stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowbus.broker import subjects
from flowbus.client import Client, ClientError
from flowbus.engine.store import EventStore

log = structlog.get_logger("flowbus.api")
router = APIRouter()
#: How long a scrape waits for the orchestrators and the store before it reports without them.
SCRAPE_TIMEOUT = 5.0


class Snapshot:
    """What a scrape reads, gathered once before the collector is asked for it."""

    def __init__(self) -> None:
        self.runs_by_state: dict[str, int] = {}
        self.queues: list[Any] = []
        self.agents: list[Any] = []
        self.dead_letters: int | None = None


async def snapshot(store: EventStore, client: Client) -> Snapshot:
    """Read the gauges: each part that cannot answer in time is left out, not an error."""
    found = Snapshot()

    async def runs() -> None:
        found.runs_by_state = await store.count_runs_by_state()

    async def queues() -> None:
        found.queues = await client.queues()

    async def agents() -> None:
        found.agents = await client.agents()

    async def dead() -> None:
        info = await client.nats.jetstream().stream_info(subjects.DEAD_LETTER_STREAM)
        found.dead_letters = info.state.messages

    for name, part in (("runs", runs), ("queues", queues), ("agents", agents), ("dead", dead)):
        try:
            await asyncio.wait_for(part(), SCRAPE_TIMEOUT)
        except (ClientError, TimeoutError, Exception) as exc:
            log.warning("metrics: a part was not read", part=name, error=str(exc) or repr(exc))
    return found


class SnapshotCollector(Collector):
    """The gauges of one scrape, as Prometheus metric families."""

    def __init__(self, found: Snapshot) -> None:
        self.found = found

    def collect(self) -> Iterable[Metric]:
        found = self.found
        runs = GaugeMetricFamily("flowbus_flow_runs", "Flow runs by current state type",
                                 labels=["state"])  # fmt: skip
        for state, count in sorted(found.runs_by_state.items()):
            runs.add_metric([state], count)
        yield runs
        depth = GaugeMetricFamily("flowbus_queue_waiting", "Run requests waiting in a work queue",
                                  labels=["queue"])  # fmt: skip
        flight = GaugeMetricFamily("flowbus_queue_in_flight",
                                   "Runs of a work queue taken by agents and not finished",
                                   labels=["queue"])  # fmt: skip
        for queue in found.queues:
            depth.add_metric([queue.settings.name], queue.waiting)
            flight.add_metric([queue.settings.name], queue.in_flight)
        yield depth
        yield flight
        used = GaugeMetricFamily("flowbus_agent_slots_used", "Flow runs an agent holds now",
                                 labels=["agent"])  # fmt: skip
        free = GaugeMetricFamily("flowbus_agent_slots_free", "Flow runs an agent can take more",
                                 labels=["agent"])  # fmt: skip
        alive = GaugeMetricFamily("flowbus_agents_alive", "Agents heard from lately")
        alive.add_metric([], sum(1 for agent in found.agents if agent.alive))
        for agent in found.agents:
            if agent.alive:
                held = len(agent.runs)
                used.add_metric([agent.name], held)
                free.add_metric([agent.name], max(agent.concurrency - held, 0))
        yield used
        yield free
        yield alive
        if found.dead_letters is not None:
            dead = GaugeMetricFamily("flowbus_dead_letters",
                                     "Messages kept in the dead-letter stream")  # fmt: skip
            dead.add_metric([], found.dead_letters)
            yield dead


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format: this process's counters and histogram, and the gauges."""
    found = await snapshot(request.app.state.store, request.app.state.client)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(found))
    body = generate_latest(REGISTRY) + generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    """The process serves requests (a liveness probe)."""
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> Response:
    """Ready for traffic: the store answers and NATS is connected (a readiness probe)."""
    store: EventStore = request.app.state.store
    client: Client = request.app.state.client
    checks: dict[str, str] = {}
    started = time.monotonic()
    try:
        await asyncio.wait_for(store.head("00000000-0000-0000-0000-000000000000"), SCRAPE_TIMEOUT)
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = str(exc) or type(exc).__name__
    checks["nats"] = "ok" if client.nats.is_connected else "disconnected"
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks,
            "seconds": round(time.monotonic() - started, 4)}  # fmt: skip
    return JSONResponse(body, status_code=200 if ready else 503)
