"""Several orchestrators serve one store together, and any of them may die at any moment.

Three ``flowbus server start`` processes share a nats-server and a store (one SQLite file, or a
PostgreSQL schema), two agents run the flows, and a random orchestrator is killed -9 (then
started again) every few seconds while 1,000 runs are submitted and run. Each flow appends its
run's id to a file, so the test counts executions of flow bodies, not just recorded states.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from flowbus.agents.decisions.model import NewRun
from flowbus.agents.run_entry import created_record
from flowbus.engine.states import Scheduled
from tests.integration.postgres import fresh_schema
from tests.integration.stack import Daemon, Stack, submit_paced, wait_until

#: Runs per test: submitted over about 12 s, so the kills (one every 1.5 s or so) fall among them.
RUNS = 600
#: A dead leader's work moves on after this (short, so the test sees many elections). Agents'
#: leases are longer than the stack's usual 2 s: agents do not die here, and five daemons on
#: two busy cores can be slow to hear a heartbeat (agent deaths have tests of their own).
MULTI = {"FLOWBUS_LEADER_LEASE_SECONDS": "2", "FLOWBUS_LEASE_SECONDS": "10"}


@asynccontextmanager
async def store_url(backend: str, tmp_path: Path) -> AsyncIterator[str | None]:
    if backend == "sqlite":
        yield None  # the stack's own file
        return
    async with fresh_schema() as url:
        yield url


class Killer:
    """Kills a random orchestrator with SIGKILL every ``every`` seconds and starts another."""

    def __init__(self, stack: Stack, orchestrators: list[Daemon], every: float) -> None:
        self.stack = stack
        self.orchestrators = orchestrators
        self.every = every
        self.kills = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        rng = random.Random(7)
        try:
            while not self._stop.wait(self.every * rng.uniform(0.6, 1.4)):
                index = rng.randrange(len(self.orchestrators))
                self.orchestrators[index].kill()
                self.kills += 1
                self.orchestrators[index] = self.stack.start_orchestrator()
        except BaseException as exc:  # the test reports it
            self.error = exc


@pytest.mark.timeout(900)
# SQLite runs with a NATS credential per role (as installations do), PostgreSQL with one shared
# connection: each store and each way of connecting is covered once (the suite's time counts).
@pytest.mark.parametrize("backend", ["postgres", "sqlite-roles"])
async def test_three_orchestrators_one_killed_every_few_seconds(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``-roles``, every daemon under its own NATS credential (``flowbus auth``)."""
    async with store_url(backend.removesuffix("-roles"), tmp_path) as url:
        stack = Stack(tmp_path, env=MULTI, store_url=url, roles=backend.endswith("-roles"))
        stack.service_env(monkeypatch)
        try:
            orchestrators = [stack.start_orchestrator() for _ in range(3)]
            deployment = stack.deploy("counted")
            for name in ("agent-a", "agent-b"):
                stack.start_agent(name, "--concurrency", "25")
            ledger = tmp_path / "executions.txt"
            with Killer(stack, orchestrators, every=1.5) as killer:
                async with stack.client() as client:
                    client.timeout = 5
                    # Paced over about 12 s, so kills fall among them.
                    ids = await submit_paced(client, deployment, {"ledger": str(ledger)}, RUNS,
                                             25, 0.5, "run", attempts=30)  # fmt: skip
                assert len(ids) == RUNS

                def completed() -> int:
                    views = stack.with_store(
                        lambda s: s.list_flow_runs(state="COMPLETED", limit=2 * RUNS)
                    )
                    return len(views)

                wait_until(lambda: completed() == RUNS, 600, f"{RUNS} completed runs")
                # At least five kills, whatever the machine's speed: a fast one completes the
                # runs before the fifth (the leader's work moving then is tested all the same).
                wait_until(lambda: killer.kills >= 5 or killer.error is not None, 120, "kills")
            assert killer.error is None, killer.error

            executions = Counter(ledger.read_text().split())
            assert set(executions) == ids
            assert [run for run, n in executions.items() if n != 1] == []  # each body once
            claims = Counter[int]()
            for run_id in ids:
                events = stack.stream(run_id)
                states = [e.data["state"]["name"] for e in events if e.type == "flow_run.state"]
                assert states.count("Completed") == 1, (run_id, states)
                assert "Crashed" not in states, (run_id, states)
                claims[sum(1 for e in events if e.data.get("attempt"))] += 1
            assert set(claims) == {1}, claims  # dispatched once each
            verify = subprocess.run(
                [sys.executable, "-m", "flowbus", "store", "verify"],
                env=stack.env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert verify.returncode == 0, verify.stdout + verify.stderr
            print(f"{backend}: {RUNS} runs, {killer.kills} orchestrators killed -9")
        finally:
            stack.close()


async def test_a_follower_takes_the_lead_when_the_leader_dies_or_stops(tmp_path: Path) -> None:
    """The leader's work (here: recording the agents' events) moves to a follower within the
    lease when the leader is killed -9, and at once when it stops cleanly."""
    stack = Stack(tmp_path, env=MULTI)
    try:
        first = stack.start_orchestrator()
        second = stack.start_orchestrator()
        assert "elected leader" in first.output() and "elected leader" not in second.output()
        deployment = stack.deploy("quick")
        stack.start_agent("agent-1")
        async with stack.client() as client:

            async def run_one() -> None:
                run = await client.submit(deployment)
                assert (await client.wait(run.run_id, timeout=60)).result == "6"
                assert stack.final_states(run.run_id)[-1] == "Completed"

            await run_one()
            first.kill()
            await run_one()  # recorded once the second has waited out the first's lease
            assert "elected leader" in second.output()
            third = stack.start_orchestrator()
            assert second.stop() == 0  # resigns: the third need not wait out a lease
            wait_until(lambda: "elected leader" in third.output(), 30, "the third to lead")
            await run_one()
    finally:
        stack.close()


async def test_a_run_whose_writer_died_before_announcing_it_is_found_and_run(
    tmp_path: Path,
) -> None:
    """An orchestrator that commits a submission and is killed -9 before it announces it or
    publishes its request leaves a run only the store knows of: the leader finds it there
    (its audit reads the store's unfinished runs) and the run completes."""
    stack = Stack(tmp_path, env={"FLOWBUS_QUEUE_AUDIT_INTERVAL": "0.5"})
    try:
        stack.start_orchestrator()
        deployment = stack.deploy("quick")
        stack.start_agent("agent-1")
        deployed = stack.with_store(lambda s: s.get_deployment(deployment))
        assert deployed is not None
        run_id = str(uuid.uuid4())
        orphan = NewRun(run_id=run_id, flow_name=deployed.flow_name, name="orphan",
                        deployment=deployment, queue=deployed.queue, parameters={}, tags=[],
                        state=Scheduled())  # fmt: skip
        created = created_record(orphan)
        stack.with_store(lambda s: s.append([created]))  # the dead writer's one commit
        async with stack.client() as client:
            final = await client.wait(run_id, timeout=60)
        assert final.name == "Completed", stack.states(run_id)
        assert stack.states(run_id).count("Completed") == 1
    finally:
        stack.close()
