"""A real flowbus deployment for tests: a private nats-server, the orchestrator and agents as
separate processes (so they can be killed, stopped and restarted), one SQLite store."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from flowbus.broker import EmbeddedNatsServer
from flowbus.broker.nats_auth import add_agent as add_agent_credential
from flowbus.broker.nats_auth import init as init_roles
from flowbus.client import Client
from flowbus.engine.deployments import build_deployment, enforcing, save_deployment
from flowbus.engine.entrypoints import load_flow
from flowbus.engine.sealing import new_key
from flowbus.engine.store import EventStore, SqliteEventStore, store_from_url
from flowbus.engine.store.views import StoredEvent

T = TypeVar("T")
FLOWS_DIR = Path(__file__).parent / "agent_flows"

#: Short leases and timers, so failure paths play out in seconds.
FAST = {
    "FLOWBUS_LEASE_SECONDS": "2",
    "FLOWBUS_HEARTBEAT_SECONDS": "0.3",
    "FLOWBUS_JANITOR_INTERVAL": "0.2",
    "FLOWBUS_RUN_ACK_WAIT": "3",
    "FLOWBUS_AGENT_GRACE_SECONDS": "5",
    "FLOWBUS_SLOT_RECHECK_SECONDS": "2",
}


#: Every daemon started in this test process, in order: a failed test's report shows the
#: last lines each of its daemons printed (tests/conftest.py).
STARTED: list[Daemon] = []


def daemon_logs(daemons: list[Daemon], lines: int = 40) -> str:
    """The last ``lines`` lines of each daemon's output."""
    shown = []
    for daemon in daemons:
        tail = daemon.output().splitlines()[-lines:]
        shown.append(f"--- {daemon.name} ({daemon.log}) ---\n" + "\n".join(tail))
    return "\n".join(shown)


class Daemon:
    """A ``flowbus ...`` daemon process whose output goes to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        STARTED.append(self)
        self.name = name
        self.log = log
        self._out = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowbus", *args],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=FLOWS_DIR,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited {self.process.returncode}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not print {text!r}:\n{self.output()}")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def stop(self, timeout: float = 30) -> int:
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a stopped process cannot die
            self.process.kill()
            self.process.wait()
        self._out.close()


class Stack:
    """A nats-server, an orchestrator and agents started on demand; ``close`` stops them all."""

    def __init__(
        self,
        root: Path,
        env: dict[str, str] | None = None,
        port: int = 0,
        store_url: str | None = None,
        auth_config: Path | None = None,
        roles: bool = False,
    ) -> None:
        """``roles``: NATS identities per role (``flowbus auth init``): the orchestrators and
        each agent run under their own credentials, and everything else (the CLI, and the
        test's own clients once it sets ``service_env``) as a service."""
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.roles: Path | None = None
        if roles:
            self.roles = root / "auth"
            init_roles(self.roles)
            auth_config = self.roles / "auth.conf"
        self.server = EmbeddedNatsServer(root / "jetstream", port=port, auth_config=auth_config)
        self.server.start()
        self.env = {
            **os.environ,
            "FLOWBUS_HOME": str(self.home),
            "FLOWBUS_NATS_URL": self.server.url,
            "NO_COLOR": "1",
            "PYTHONPATH": str(FLOWS_DIR),
            "FLOWBUS_RESULT_STORAGE": str(self.home / "results" / "runs"),
            "FLOWBUS_RESULT_KEYS": new_key(),
            **FAST,
            **(env or {}),
        }
        self.env.pop("FLOWBUS_STORE_URL", None)
        if self.roles is not None:
            self.env["FLOWBUS_NATS_CREDS"] = str(self.roles / "service.creds")
        self.store_url = store_url
        if store_url is not None:
            self.env["FLOWBUS_STORE_URL"] = store_url
        self.daemons: list[Daemon] = []
        self.orchestrator: Daemon | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def start_orchestrator(self, extra_env: dict[str, str] | None = None) -> Daemon:
        env = {**self.env, **self._credential("orchestrator"), **(extra_env or {})}
        number = len(self.daemons)
        command = ["server", "start", "--api-port", "0"]
        daemon = Daemon("orchestrator", command, env, self.root / f"orch-{number}.log")
        self.daemons.append(daemon)
        daemon.wait_for("orchestrator is serving")
        self.orchestrator = daemon
        return daemon

    @property
    def api_url(self) -> str:
        """Where the orchestrator's HTTP API listens (it prints it)."""
        assert self.orchestrator is not None
        found = re.search(r"API at (https?://\S+)/api/v1", self.orchestrator.output())
        assert found is not None, self.orchestrator.output()
        return found.group(1)

    def submit_over_http(self, deployment: str, **parameters: Any) -> str:
        """Run a deployment through the HTTP API, as the UI does; returns the run id."""
        import httpx

        token = self.env.get("FLOWBUS_API_TOKEN")
        response = httpx.post(
            f"{self.api_url}/api/v1/deployments/{deployment}/runs",
            json={"parameters": parameters},
            headers={"authorization": f"Bearer {token}"} if token else {},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["run_id"])

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``flowbus ARGS`` as a user types it next to this stack (in the flows' folder)."""
        done = subprocess.run(
            [sys.executable, "-m", "flowbus", *args],
            env=self.env, cwd=FLOWS_DIR, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"flowbus {' '.join(args)}: {done.stdout}{done.stderr}")
        return done

    def start_process(self, name: str, *args: str) -> Daemon:
        """Any other ``flowbus`` daemon (``scheduler start``, say)."""
        daemon = Daemon(name, list(args), self.env, self.root / f"{name}.log")
        self.daemons.append(daemon)
        return daemon

    def _credential(self, role: str, agent_queues: tuple[str, ...] = ()) -> dict[str, str]:
        """The environment that points a daemon at its role's credentials (with ``roles``)."""
        if self.roles is None:
            return {}
        path = self.roles / f"{role}.creds"
        if agent_queues and not path.exists():
            path = add_agent_credential(self.roles, role.removeprefix("agent-"), agent_queues)
        return {"FLOWBUS_NATS_CREDS": str(path)}

    def start_agent(self, name: str, *args: str, env: dict[str, str] | None = None) -> Daemon:
        command = ["agent", "start", "--name", name, *args]
        queues = tuple(a for flag, a in itertools.pairwise(args)
                       if flag in ("-q", "--queue")) or ("default",)  # fmt: skip
        env = {**self.env, **self._credential(f"agent-{name}", queues), **(env or {})}
        daemon = Daemon(name, command, env, self.root / f"{name}.log")
        self.daemons.append(daemon)
        daemon.wait_for(f"agent {name} is serving")
        return daemon

    def close(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.kill()
        self.server.stop()

    # --- the store, read as a user would -----------------------------------------------------

    def store(self) -> EventStore:
        if self.store_url is not None:
            return store_from_url(self.store_url)
        return SqliteEventStore(self.home / "flowbus.db")

    def deploy(
        self,
        function: str,
        name: str = "test",
        queue: str = "default",
        crash_retries: int = 3,
        folder: Path = FLOWS_DIR,
        file: str = "flows.py",
        blocks: list[str] | None = None,
        enforce: bool = True,
        **params: Any,
    ) -> str:
        flow = load_flow(f"{file}:{function}", folder)
        spec = build_deployment(flow, name, f"{file}:{function}", folder, queue, params,
                                crash_retries=crash_retries)  # fmt: skip
        spec = enforcing(dataclasses.replace(spec, blocks=blocks), enforce)

        async def save(store: EventStore) -> str:
            return (await save_deployment(store, spec)).name

        return self.with_store(save)

    def with_store(self, action: Callable[[EventStore], Awaitable[T]]) -> T:
        async def main() -> T:
            store = self.store()
            await store.open()
            try:
                return await action(store)
            finally:
                await store.close()

        # In a thread of its own: callers are often async tests with a loop running.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, main()).result()

    def service_env(self, monkeypatch: Any) -> None:
        """Make the test's own clients connect as a service (with ``roles``)."""
        if self.roles is not None:
            monkeypatch.setenv("FLOWBUS_NATS_CREDS", str(self.roles / "service.creds"))

    def share_results(self, monkeypatch: Any) -> None:
        """Read results in the test's own process as a client on the stack's machine does:
        from its result storage, checked with its result key."""
        for name in ("FLOWBUS_RESULT_STORAGE", "FLOWBUS_RESULT_KEYS"):
            monkeypatch.setenv(name, self.env[name])

    def stream(self, run_id: str) -> list[StoredEvent]:
        return self.with_store(lambda s: s.read_stream(run_id))

    def states(self, run_id: str) -> list[str]:
        return [
            e.data["state"]["name"]
            for e in self.stream(run_id)
            if "state" in e.data and e.type.startswith("flow_run")
        ]

    def final_states(self, run_id: str, timeout: float = 15) -> list[str]:
        """The run's state names once its last recorded one is final (the store may trail
        what a subscriber saw by a commit)."""
        final = {"Completed", "Failed", "Cancelled", "Crashed", "TimedOut", "Cached"}
        wait_until(lambda: self.states(run_id)[-1:] and self.states(run_id)[-1] in final,
                   timeout, f"run {run_id} to be recorded final")  # fmt: skip
        return self.states(run_id)

    def client(self) -> Client:
        return Client(self.url)


async def until(
    check: Callable[[], Awaitable[bool]], timeout: float = 15.0, what: str = "condition"
) -> None:
    """``wait_until`` for an async check, from a test's own event loop."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def wait_until(condition: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def submit_paced(
    client: Client,
    deployment: str,
    parameters: dict[str, Any],
    count: int,
    batch: int,
    pause: float,
    key: str,
    attempts: int = 60,
) -> set[str]:
    """Submit ``count`` runs, ``batch`` at a time with ``pause`` seconds between batches (so
    faults fall among them), each with the idempotency key ``<key>-<n>``; a submission that
    fails (its orchestrator died, the server restarts) is sent again with the same key."""
    from flowbus.client import ClientError

    async def one(number: int) -> str:
        for _ in range(attempts):
            try:
                submitted = await client.submit(deployment, parameters,
                                                idempotency_key=f"{key}-{number}")  # fmt: skip
                return submitted.run_id
            except ClientError:
                await asyncio.sleep(0.5)
        raise AssertionError(f"run {number} could not be submitted")

    ids: list[str] = []
    for start in range(0, count, batch):
        ids += await asyncio.gather(*(one(n) for n in range(start, min(start + batch, count))))
        await asyncio.sleep(pause)
    return set(ids)


def free_port() -> int:
    """A loopback port nobody listens on now (for a server restarted on the same port)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
