"""Operations endpoints of `flowbus server start`: Prometheus metrics, liveness, readiness."""

from __future__ import annotations

import signal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .stack import Stack, wait_until


@pytest.fixture
def stack(stack: Stack) -> Stack:
    stack.start_orchestrator()
    return stack


def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{stack.api_url}/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


async def test_metrics_count_runs_events_latency_queues_agents_and_expiries(stack: Stack) -> None:
    quick, sleepy = stack.deploy("quick"), stack.deploy("sleepy_once", crash_retries=0)
    doomed = stack.start_agent("agent-doomed", "--concurrency", "3")
    async with stack.client() as client:
        for _ in range(3):
            run = await client.submit(quick, {"n": 2})
            assert (await client.wait(run.run_id, timeout=60)).completed
        hanging = await client.submit(sleepy, {"seconds": 120})
        wait_until(lambda: stack.states(hanging.run_id)[-1:] == ["Running"], what="the run")
        used = ("flowbus_agent_slots_used", (("agent", "agent-doomed"),))
        # As of the agent's next heartbeat (it lists the runs it holds).
        wait_until(lambda: scrape(stack).get(used) == 1, what="the agent's slot to show")
        found = scrape(stack)
        assert found["flowbus_agent_slots_free", (("agent", "agent-doomed"),)] == 2
        assert found["flowbus_queue_in_flight", (("queue", "default"),)] == 1
        doomed.signal(signal.SIGKILL)  # its lease runs out: Crashed
        await client.wait(hanging.run_id, timeout=60)
    found = scrape(stack)
    assert found["flowbus_flow_runs", (("state", "COMPLETED"),)] == 3
    assert found["flowbus_flow_runs", (("state", "CRASHED"),)] == 1
    assert found["flowbus_lease_expiries_total", ()] == 1
    assert found["flowbus_task_runs_recorded_total", ()] == 6
    assert found["flowbus_events_recorded_total", (("type", "task_run.state"),)] >= 12
    assert found["flowbus_run_start_latency_seconds_count", ()] == 4
    assert found["flowbus_queue_waiting", (("queue", "default"),)] == 0
    assert ("flowbus_dead_letters", ()) in found


def test_health_and_readiness_probes(stack: Stack) -> None:
    assert httpx.get(f"{stack.api_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.api_url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"store": "ok", "nats": "ok"}
