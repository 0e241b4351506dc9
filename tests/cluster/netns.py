"""Hosts for tests, made as network namespaces.

Each host is a namespace with one interface (``eth0``, a private address in ``10.<n>.0.0/24``)
joined by a veth pair to a bridge that lives in a namespace of its own, so nothing is added to
the machine's own network: the addresses exist only inside namespaces the test made.
Processes run in a host with ``ip netns exec``; they share the file system (a ledger file is
readable from every host). ``Network.close`` kills every process started and deletes every
namespace, also when the test failed.

Making namespaces needs root. ``skip_reason()`` says why they cannot be made here; tests skip
with it, unless ``CI`` is set, where they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path


def skip_reason() -> str | None:
    """Why network namespaces cannot be made here (None: they can)."""
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = f"fbprobe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Process:
    """A process started in a host, its output in a file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGCONT)
            self.popen.kill()
        self.popen.wait()

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited {self.popen.returncode}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not print {text!r}:\n{self.output()}")
            time.sleep(0.1)


@dataclass
class Host:
    """One namespace: a host with an address."""

    network: Network
    name: str
    namespace: str
    address: str
    processes: list[Process] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], env: dict[str, str], user: str | None = None
    ) -> Process:
        """Start ``argv`` in this host (as ``user`` if given), output to a log file."""
        log = self.network.logs / f"{self.name}-{name}-{len(self.processes)}.log"
        prefix = ["ip", "netns", "exec", self.namespace]
        if user is not None:  # setpriv execs (runuser forks: a kill would miss the process)
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        with log.open("wb") as out:
            popen = subprocess.Popen([*prefix, *argv], env=env, stdout=out,
                                     stderr=subprocess.STDOUT, cwd=self.network.root)  # fmt: skip
        process = Process(f"{self.name}/{name}", popen, log)
        self.processes.append(process)
        self.network.processes.append(process)
        return process

    def run(
        self, argv: list[str], env: dict[str, str], timeout: float = 120, cwd: Path | None = None
    ) -> str:
        """Run ``argv`` in this host to its end; its output (it must succeed)."""
        done = subprocess.run(["ip", "netns", "exec", self.namespace, *argv], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"{argv} failed on {self.name}:\n{done.stdout}{done.stderr}")
        return done.stdout

    def link(self, up: bool) -> None:
        """Cut this host off the network, or connect it again."""
        _ip("-n", self.namespace, "link", "set", "eth0", "up" if up else "down")

    def kill_all(self) -> None:
        for process in self.processes:
            process.kill()


class Network:
    """Hosts on one bridge; ``close`` removes them all."""

    def __init__(self, root: Path, subnet: int = 77) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.tag = uuid.uuid4().hex[:5]
        self.subnet = subnet
        self.switch = f"fb{self.tag}sw"
        self.hosts: dict[str, Host] = {}
        self.processes: list[Process] = []
        self._namespaces: list[str] = []
        self._add_namespace(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, name: str) -> Host:
        number = len(self.hosts) + 1
        namespace = f"fb{self.tag}{name}"
        self._add_namespace(namespace)
        outside, inside = f"v{self.tag}{number}", f"e{self.tag}{number}"
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", outside, "netns", self.switch)
        _ip("link", "set", inside, "netns", namespace)
        _ip("-n", self.switch, "link", "set", outside, "master", "br0")
        _ip("-n", self.switch, "link", "set", outside, "up")
        _ip("-n", namespace, "link", "set", inside, "name", "eth0")
        address = f"10.{self.subnet}.0.{10 + number}"
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        host = self.hosts[name] = Host(self, name, namespace, address)
        return host

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(Exception):  # already gone
                process.kill()
        for namespace in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self._namespaces.clear()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
