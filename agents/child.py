"""Run one claimed flow run in a process of its own.

An agent with ``--isolation process`` forks each run's process from a warm server that has
flowbus imported already (``warm_start``, multiprocessing's forkserver), so a run's process
starts in milliseconds rather than the time an interpreter takes to start and import.
``python -m flowbus.agents.child`` does the same from a cold start, reading
``{"grant": ClaimGrant, "nats_url": ...}`` as JSON on stdin.

SIGTERM cancels the run, SIGUSR1 hands it back to its queue. Exits 0 once the run's final
state is published, 75 when it was handed back; anything else tells the agent the run crashed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

from flowbus.agents.execution import InProcessRun
from flowbus.agents.flow_code import FlowCache
from flowbus.agents.process_run import EXIT_CANCELLED, EXIT_FINISHED, EXIT_HANDED_BACK
from flowbus.agents.slot_client import NatsSlots
from flowbus.broker.event_sink import NatsEventSink
from flowbus.broker.protocol import ClaimGrant
from flowbus.engine.loops import new_event_loop


async def _main(grant: ClaimGrant, sink: NatsEventSink, agent: str) -> int:
    slots = NatsSlots(sink.client, sink.loop, agent)
    execution = InProcessRun(grant, sink, FlowCache(), slots=slots)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, execution.cancel)
    loop.add_signal_handler(signal.SIGUSR1, execution.hand_back, "(parent)")
    outcome = await execution.run()
    if outcome == "handed_back":
        return EXIT_HANDED_BACK
    return EXIT_CANCELLED if outcome == "cancelled" else EXIT_FINISHED


def warm_start(spec_json: str) -> None:
    """The target of a process forked from the warm server: a session of its own (so the
    agent can kill the run's whole process group), then the run."""
    os.setsid()
    sys.exit(run_spec(json.loads(spec_json)))


def main() -> int:
    return run_spec(json.loads(sys.stdin.read()))


def run_spec(spec: dict[str, Any]) -> int:
    grant = ClaimGrant.model_validate(spec["grant"])
    sink = NatsEventSink(spec["nats_url"], name=f"flowbus-run-{grant.run_id[:8]}")
    loop = new_event_loop()
    try:
        return loop.run_until_complete(_main(grant, sink, spec.get("agent", "")))
    finally:
        sink.close()
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
