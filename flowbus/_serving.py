"""``flow.serve()`` and ``serve(...)``: the quickest way to deploy, as in Prefect.

    if __name__ == "__main__":
        etl.serve(name="nightly", cron="0 6 * * *", parameters={"day": "today"})

records the deployment and runs an agent for it in this process until Ctrl-C. Its runs are
submitted as any deployment's are (``flowbus run etl/nightly``, the UI, ``run_deployment``, the
schedule) and land on a queue of their own, so only this process runs them.

With a flowbus server to join (``$FLOWBUS_NATS_URL``, or a ``flowbus up`` running on this
machine) the process adds just the agent; otherwise it starts the whole local stack
(nats-server, orchestrator, API and UI) around it, as ``flowbus up`` would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowbus.engine.deployments import DeploymentSpec
    from flowbus.engine.flows import Flow


def serve_queue(flow_name: str) -> str:
    """The queue a served flow's runs go to: one per flow, served only by ``serve``."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"serve-{flow_name}")[:100]


def to_deployment(
    flow: Flow[..., Any],
    name: str | None = None,
    cron: str | list[str] | None = None,
    interval: float | list[float] | None = None,
    rrule: str | list[str] | None = None,
    parameters: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    description: str | None = None,
    timezone: str = "UTC",
    queue: str | None = None,
) -> DeploymentSpec:
    """A deployment of ``flow`` (not yet recorded) with schedules, for ``serve``."""
    from flowbus.engine.deployments import build_deployment, entrypoint_of
    from flowbus.engine.errors import UsageError
    from flowbus.engine.schedules import (
        CronSchedule,
        DeploymentSchedule,
        IntervalSchedule,
        RRuleSchedule,
    )

    def many(value: Any) -> list[Any]:
        return [] if value is None else list(value) if isinstance(value, list) else [value]

    base = Path.cwd()
    spec = build_deployment(flow, name or flow.name, entrypoint_of(flow, base), base,
                            queue or serve_queue(flow.name), parameters, tags,
                            description)  # fmt: skip
    try:
        rules: list[Any] = [
            *(CronSchedule(cron=c, timezone=timezone) for c in many(cron)),
            *(IntervalSchedule(interval=float(i), timezone=timezone) for i in many(interval)),
            *(RRuleSchedule(rrule=r, timezone=timezone) for r in many(rrule)),
        ]
    except ValueError as exc:
        raise UsageError(f"invalid schedule: {exc}") from exc
    missing = sorted(set(spec.parameter_schema.get("required", [])) - set(spec.parameters))
    if rules and missing:
        raise UsageError(f"a scheduled run has nobody to give it {', '.join(missing)}: "
                         "give them in parameters=")  # fmt: skip
    schedules = [DeploymentSchedule(id=i + 1, schedule=rule) for i, rule in enumerate(rules)]
    return dataclasses.replace(spec, schedules=schedules)


def serve(*deployments: DeploymentSpec, limit: int = 10) -> None:
    """Record the deployments and run their flow runs here (``limit`` at once) until Ctrl-C."""
    from flowbus.engine.loops import new_event_loop

    if not deployments:
        raise ValueError("serve() needs at least one deployment (flow.to_deployment(...))")
    loop = new_event_loop()
    try:
        loop.run_until_complete(_serve(list(deployments), limit))
    finally:
        loop.close()


async def _serve(deployments: list[DeploymentSpec], limit: int) -> None:
    from flowbus.agents import AgentSettings
    from flowbus.engine.deployments import save_deployment
    from flowbus.engine.store import store_from_url

    async with store_from_url() as store:
        for spec in deployments:
            saved = await save_deployment(store, spec)
            print(f"serving deployment {saved.name!r} on queue {saved.queue!r}", flush=True)
    queues = tuple(dict.fromkeys(spec.queue for spec in deployments))
    settings = AgentSettings.from_env(queues=queues, concurrency=limit)
    from flowbus.broker.connection import nats_configured

    if nats_configured():
        await _agent_only(settings)
    else:
        await _whole_stack(settings)


async def _agent_only(settings: Any) -> None:
    import signal

    from flowbus.agents import Agent
    from flowbus.broker import connect
    from flowbus.broker.connection import nats_url

    url = nats_url()
    agent = Agent(await connect(url, name="flowbus-serve"), settings, url)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, agent.stop)
    print(f"agent {settings.name} runs them (Ctrl-C to stop)", flush=True)
    try:
        await agent.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await agent.client.close()


async def _whole_stack(settings: Any) -> None:
    from flowbus._stack import DEFAULT_PORT, LocalStack, StackInfo, run_until_signalled

    def started(info: StackInfo) -> None:
        print(f"flowbus is up here (NATS {info.nats_url}, UI {info.api_url or '-'}); "
              "Ctrl-C to stop", flush=True)  # fmt: skip

    await run_until_signalled(LocalStack(DEFAULT_PORT, agent=settings), started)


__all__ = ["serve", "serve_queue", "to_deployment"]
