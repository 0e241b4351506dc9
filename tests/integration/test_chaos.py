"""Chaos: a few hundred runs while agents and the orchestrator are killed -9 and the
nats-server restarts, at random. No run is lost, none completes twice, no flow body runs again
once its completion is recorded, and a run that executes again replays its completed tasks:
besides the task that was interrupted, only a task whose completion had not been published when
its agent died runs again. Every execution of a task body or a body's end leaves a line in a
ledger file, so executions are counted, not inferred from states. Every daemon runs under the
NATS credential of its role (``flowbus auth``), as a production installation does."""

from __future__ import annotations

import random
import threading
from collections import Counter
from pathlib import Path

import pytest

from .stack import Daemon, Stack, free_port, submit_paced, wait_until

RUNS = 300
#: Leases long enough that two busy cores do not crash healthy runs; faults do it instead.
TIMERS = {"FLOWBUS_LEASE_SECONDS": "4", "FLOWBUS_HEARTBEAT_SECONDS": "0.5"}


class Chaos:
    """Every few seconds (at random), in turn: kill -9 an agent (a random one; a new one
    starts), kill -9 the orchestrator (and start it again), restart the nats-server."""

    def __init__(self, stack: Stack, agents: list[Daemon], every: float) -> None:
        self.stack = stack
        self.agents = agents
        self.every = every
        self.faults: Counter[str] = Counter()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0

    def __enter__(self) -> Chaos:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        rng = random.Random(12)
        try:
            # Each kind within the first three faults (a loaded machine submits slowly), then
            # in turn.
            kinds = ["agent", "orchestrator", "nats", "agent"]
            while not self._stop.wait(self.every * rng.uniform(0.6, 1.4)):
                fault = kinds[sum(self.faults.values()) % len(kinds)]
                self.faults[fault] += 1
                if fault == "agent":
                    index = rng.randrange(len(self.agents))
                    self.agents[index].kill()
                    self._started += 1
                    self.agents[index] = self.stack.start_agent(f"agent-new-{self._started}")
                elif fault == "orchestrator":
                    assert self.stack.orchestrator is not None
                    self.stack.orchestrator.kill()
                    self.stack.start_orchestrator()
                else:
                    self.stack.server.stop()
                    self.stack.server.start()  # the same port: everyone reconnects
        except BaseException as exc:  # the test reports it
            self.error = exc


@pytest.mark.timeout(600)
async def test_runs_survive_random_kills_and_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each daemon under its own NATS credential (each new agent signs one), the test a service.
    stack = Stack(tmp_path, env=TIMERS, port=free_port(), roles=True)
    stack.service_env(monkeypatch)
    try:
        stack.start_orchestrator()
        deployment = stack.deploy("chaos_steps")
        agents = [stack.start_agent(f"agent-{n}", "--concurrency", "25") for n in range(2)]
        ledger = tmp_path / "ledger.txt"
        with Chaos(stack, agents, every=2.5) as chaos:
            async with stack.client() as client:
                client.timeout = 5
                # Runs of about a second, paced over about 15 s, so faults fall among them.
                parameters = {"ledger": str(ledger), "pause": 0.3}
                ids = await submit_paced(client, deployment, parameters, RUNS, 20, 1.0, "chaos",
                                         attempts=120)  # fmt: skip

            def completed() -> int:
                views = stack.with_store(lambda s: s.list_flow_runs(state="COMPLETED",
                                                                    limit=2 * RUNS))  # fmt: skip
                return len(views)

            wait_until(lambda: completed() == RUNS, 300, f"{RUNS} completed runs")
            wait_until(lambda: len(chaos.faults) == 3, 120, "a fault of each kind")
        assert chaos.error is None, chaos.error
        assert set(chaos.faults) == {"agent", "orchestrator", "nats"}, chaos.faults

        executions: dict[str, Counter[str]] = {run: Counter() for run in ids}
        for line in ledger.read_text().splitlines():
            run, what = line.split()
            executions[run][what] += 1
        reexecuted = 0
        for run in ids:
            events = stack.stream(run)
            states = [e for e in events if e.type == "flow_run.state"]
            names = [e.data["state"]["name"] for e in states]
            assert names.count("Completed") == 1, (run, names)
            assert names[-1] == "Completed", (run, names)
            attempts = sum(1 for e in states if e.data.get("attempt"))
            done = executions[run]
            # No attempt after the completion was recorded: a body's end runs at most once
            # per attempt, and the last attempt is the one that completed.
            assert 1 <= done["end"] <= attempts, (run, done, names)
            # Replay: each later attempt ran again at most the interrupted task and one whose
            # completion had not left its dead agent; the rest replayed.
            tasks = done["a"] + done["b"] + done["c"]
            assert 3 <= tasks <= 3 + 2 * (attempts - 1), (run, done, names)
            reexecuted += tasks - 3
        assert stack.with_store(lambda s: s.verify_projections()) == []
        print(f"faults {dict(chaos.faults)}; task bodies run again {reexecuted}")
    finally:
        stack.close()
