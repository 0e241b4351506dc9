"""flowbus on five hosts, started from the files in deploy/.

``h1``, ``h2``, ``h3`` each run a NATS node (deploy/nats/nats-server.conf next to the
``auth.conf`` of ``flowbus auth init``, TLS from a CA the test makes), an orchestrator and an
agent (the command lines of deploy/systemd's units), each under its own credential: the
orchestrators share ``orchestrator.creds``, each agent has its own (``agent-h1-default``, as
the agent unit names it), and the agents' hosts get no store URL and no secret key; ``pg``
runs PostgreSQL (initdb in a temporary folder, from the machine's PostgreSQL binaries);
``client`` is a service that submits runs (its probes of streams use the operator's
``admin.creds``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from configparser import ConfigParser
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from flowbus.broker.nats_auth import add_agent
from flowbus.broker.nats_auth import init as init_roles
from flowbus.broker.server import find_nats_server
from flowbus.engine.keys import new_key
from tests.integration.stack import FLOWS_DIR

from .netns import Host, Network, Process
from .tls import TestCA

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
HERE = Path(__file__).resolve().parent
NODES = ("h1", "h2", "h3")
API_TOKEN = "cluster-test-token"
#: Timers short enough that failures play out in seconds, long enough for five hosts of
#: daemons on two busy cores.
TIMERS = {
    "FLOWBUS_LEASE_SECONDS": "6",
    "FLOWBUS_HEARTBEAT_SECONDS": "1",
    "FLOWBUS_JANITOR_INTERVAL": "0.3",
    "FLOWBUS_LEADER_LEASE_SECONDS": "3",
    "FLOWBUS_RUN_ACK_WAIT": "10",
    "FLOWBUS_AGENT_GRACE_SECONDS": "5",
}


def postgres_bin() -> Path | None:
    """The folder of the machine's PostgreSQL server binaries, if it has them."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if found:
        return found[-1].parent
    server = shutil.which("postgres")
    return Path(server).parent if server else None


def unit_command(unit: str, env: dict[str, str], host: str, instance: str = "") -> list[str]:
    """A systemd unit's ExecStart, as the unit would run it here: ``${VAR}`` from ``env``,
    ``%H`` the host's name, ``%i`` the instance, flowbus from this virtualenv."""
    parser = ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / unit)
    line = parser["Service"]["ExecStart"].replace("%H", host).replace("%i", instance)
    line = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], line)
    argv = shlex.split(line)
    if argv[0] == "/opt/flowbus/bin/flowbus":
        argv = [sys.executable, "-m", "flowbus", *argv[1:]]
    return argv


class Cluster:
    def __init__(self, network: Network, root: Path) -> None:
        self.network = network
        self.root = root
        self.ca = TestCA(root / "tls")
        self.hosts = {name: network.add_host(name) for name in (*NODES, "pg", "client")}
        self.nats: dict[str, Process] = {}
        self.orchestrators: dict[str, Process] = {}
        self.agents: dict[str, Process] = {}
        self._pgdata: Path | None = None
        # The identities, made once by the operator; nats-server.conf installed next to them.
        self.auth = root / "nats-auth"
        init_roles(self.auth)
        shutil.copy(DEPLOY / "nats" / "nats-server.conf", self.auth / "nats-server.conf")
        pg = self.hosts["pg"]
        self.store_url = f"postgresql://postgres@{pg.address}:5432/flowbus"
        urls = ",".join(f"tls://{self.hosts[n].address}:4222" for n in NODES)
        self.env = {
            **os.environ,
            "FLOWBUS_NATS_URL": urls,
            "FLOWBUS_NATS_TLS_CA": str(self.ca.ca),
            "FLOWBUS_STORE_URL": self.store_url,
            "FLOWBUS_RESULT_STORAGE": str(root / "results"),  # a shared file system
            # Shared by the hosts, as a deployment shares them: results sealed on one host are
            # read on another, and any orchestrator checks the attempt keys of any claim.
            "FLOWBUS_RESULT_KEYS": new_key(),
            "FLOWBUS_FENCE_KEYS": new_key(),
            "FLOWBUS_SECRET_KEY": Fernet.generate_key().decode(),  # the orchestrators' alone
            "FLOWBUS_API_TOKEN": API_TOKEN,
            "FLOWBUS_API_PORT": "4200",
            "FLOWBUS_AGENT_CONCURRENCY": "25",
            "PYTHONPATH": f"{FLOWS_DIR}:{REPO}",
            "NO_COLOR": "1",
            **TIMERS,
        }

    # --- PostgreSQL ----------------------------------------------------------------------

    def start_postgres(self) -> None:
        binaries = postgres_bin()
        assert binaries is not None, "no PostgreSQL server binaries on this machine"
        # Its own folder, owned by postgres (the server refuses to run as root).
        data = self._pgdata = Path(tempfile.mkdtemp(prefix="flowbus-pg-"))
        shutil.chown(data, "postgres", "postgres")
        as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        initdb = [str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
        subprocess.run([*as_postgres, *initdb, "--no-sync"], check=True, capture_output=True)
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all 10.{self.network.subnet}.0.0/24 trust\n")
        pg = self.hosts["pg"]
        pg.start("postgres", [str(binaries / "postgres"), "-D", str(data), "-p", "5432",
                              "-c", f"listen_addresses={pg.address}",
                              "-c", f"unix_socket_directories={data}"],
                 self.env, user="postgres")  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            ready = subprocess.run(["ip", "netns", "exec", pg.namespace,
                                    str(binaries / "pg_isready"), "-h", pg.address, "-p", "5432"],
                                   capture_output=True)  # fmt: skip
            if ready.returncode == 0:
                break
            assert time.monotonic() < deadline, "PostgreSQL did not start"
            time.sleep(0.2)
        pg.run([str(binaries / "createdb"), "-h", pg.address, "-U", "postgres", "flowbus"],
               self.env)  # fmt: skip

    # --- NATS ----------------------------------------------------------------------------

    def nats_env(self, name: str) -> dict[str, str]:
        host = self.hosts[name]
        cert, key = self.ca.folder / f"nats-{name}.pem", self.ca.folder / f"nats-{name}-key.pem"
        if not cert.exists():
            cert, key = self.ca.issue(f"nats-{name}", [host.address])
        return {
            **self.env,
            "NATS_NAME": f"nats-{name}",
            "NATS_LISTEN": f"{host.address}:4222",
            "NATS_CLUSTER_LISTEN": f"{host.address}:6222",
            "NATS_MONITOR": f"{host.address}:8222",
            **self.routes(),
            "NATS_STORE_DIR": str(self.root / f"jetstream-{name}"),
            "NATS_TLS_CERT": str(cert),
            "NATS_TLS_KEY": str(key),
            "NATS_TLS_CA": str(self.ca.ca),
        }

    def routes(self) -> dict[str, str]:
        return {
            f"NATS_ROUTE_{number}": f"nats-route://{self.hosts[name].address}:6222"
            for number, name in enumerate(NODES, 1)
        }

    def start_nats(self, name: str) -> Process:
        conf = str(self.auth / "nats-server.conf")
        process = self.hosts[name].start("nats", [find_nats_server(), "-c", conf],
                                         self.nats_env(name))  # fmt: skip
        self.nats[name] = process
        return process

    def wait_for_jetstream(self, name: str, timeout: float = 90) -> None:
        """Until the node's health check passes (JetStream's cluster has a leader and the node
        is current with it)."""
        self.nats[name].wait_for("Server is ready", timeout)
        url = f"http://{self.hosts[name].address}:8222/healthz"
        probe = (
            "import sys, time, urllib.request\n"
            f"deadline = time.monotonic() + {timeout}\n"
            "while True:\n"
            "    try:\n"
            f"        urllib.request.urlopen({url!r}, timeout=2); break\n"
            "    except Exception:\n"
            "        if time.monotonic() > deadline: sys.exit('not healthy')\n"
            "        time.sleep(0.2)\n"
        )
        self.hosts[name].run([sys.executable, "-c", probe], self.env, timeout + 10)

    # --- flowbus daemons -----------------------------------------------------------------

    def daemon_env(self, name: str, creds: str) -> dict[str, str]:
        """A daemon's environment on host ``name``, under the credentials file ``creds``."""
        home = self.root / "homes" / name
        home.mkdir(parents=True, exist_ok=True)
        host = self.hosts[name]
        return {**self.env, "FLOWBUS_HOME": str(home), "FLOWBUS_API_HOST": host.address,
                "FLOWBUS_NATS_CREDS": str(self.auth / creds)}  # fmt: skip

    def start_orchestrator(self, name: str) -> Process:
        env = self.daemon_env(name, "orchestrator.creds")
        argv = unit_command("flowbus-server.service", env, name)
        process = self.hosts[name].start("orchestrator", argv, env)
        self.orchestrators[name] = process
        return process

    def start_agent(self, name: str) -> Process:
        """The agent unit's daemon, as deploy/systemd sets it up: its own credential
        (``agent-<host>-<queue>``), and none of the orchestrators' settings."""
        creds = self.auth / f"agent-{name}-default.creds"
        if not creds.exists():
            add_agent(self.auth, f"{name}-default", ("default",))
        env = self.daemon_env(name, creds.name)
        for setting in ("FLOWBUS_STORE_URL", "FLOWBUS_SECRET_KEY", "FLOWBUS_FENCE_KEYS"):
            env.pop(setting, None)
        argv = unit_command("flowbus-agent@.service", env, name, "default")
        process = self.hosts[name].start("agent", argv, env)
        self.agents[name] = process
        return process

    def start_host(self, name: str) -> None:
        """What a host's units start: its NATS node, orchestrator and agent."""
        self.start_nats(name)
        self.start_orchestrator(name)
        self.start_agent(name)

    def start(self) -> None:
        self.start_postgres()
        for name in NODES:
            self.start_nats(name)
        for name in NODES:
            self.wait_for_jetstream(name)
        # As a single-node installation left them: the daemons bring them to three replicas.
        self.script("streams_r1.py", timeout=120)
        for name in NODES:
            self.start_orchestrator(name)
        for name in NODES:
            self.orchestrators[name].wait_for("orchestrator is serving", 120)
            self.start_agent(name)

    # --- from the client host ------------------------------------------------------------

    def client(self, *args: str, timeout: float = 300) -> str:
        """A flowbus command run on the client host (from the flows' folder), as a service."""
        argv = [sys.executable, "-m", "flowbus", *args]
        env = self.daemon_env("client", "service.creds")
        return self.hosts["client"].run(argv, env, timeout, cwd=FLOWS_DIR)

    def script(
        self, script: str, *args: str, timeout: float = 600, creds: str = "admin.creds"
    ) -> Any:
        """One of this folder's scripts run on the client host (by default as the operator,
        who may read any stream's state); its JSON output."""
        argv = [sys.executable, str(HERE / script), *args]
        output = self.hosts["client"].run(argv, self.daemon_env("client", creds), timeout)
        return json.loads(output.strip().splitlines()[-1])

    def orchestrator_excerpts(self, count: int = 30) -> list[str]:
        """The orchestrators' warnings, errors and changes of leader: the last of each kind
        (ids and numbers aside) with how often it came, in time order."""
        pattern = re.compile(r"\[(warning|error)|elected|leading|stepping|resigned")
        kinds: dict[str, tuple[str, int]] = {}
        for log in sorted(self.network.logs.glob("*-orchestrator-*.log")):
            host = log.name.split("-")[0]
            for line in log.read_text(errors="replace").splitlines():
                if line[:4].isdigit() and pattern.search(line):
                    text = f"{line[11:19]} {host} {' '.join(line[20:].split())[:200]}"
                    kind = re.sub(r"[0-9a-f-]{36}|\d+", "#", text[9:])[:90]
                    latest, seen = kinds.get(kind, ("", 0))
                    kinds[kind] = (max(text, latest), seen + 1)
        lines = sorted(f"{text} (x{n})" if n > 1 else text for text, n in kinds.values())
        return lines[-count:]

    def close(self) -> None:
        self.network.close()
        if self._pgdata is not None:
            shutil.rmtree(self._pgdata, ignore_errors=True)


__all__ = ["NODES", "Cluster", "Host", "postgres_bin", "unit_command"]
