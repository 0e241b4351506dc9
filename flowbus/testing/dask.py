"""A Dask cluster of real processes for tests and benchmarks: ``dask scheduler`` and ``dask
worker`` started from this interpreter's environment on loopback, stopped by PID.

    with DaskProcesses(tmp_path, workers=2) as cluster:
        my_flow.with_options(task_runner=DaskTaskRunner(cluster.address))()
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: The ``dask`` command of this interpreter's environment.
DASK = Path(sys.executable).parent / "dask"


class DaskProcesses:
    """A scheduler and ``workers`` worker processes (``threads`` threads each); their output
    goes to ``<root>/<name>.log``. ``close`` stops them, also when starting failed."""

    def __init__(self, root: Path, workers: int = 2, threads: int = 2) -> None:
        self.root = root
        self.processes: list[subprocess.Popen[bytes]] = []
        self.address = ""
        self.worker_addresses: list[str] = []
        try:
            self._start(workers, threads)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> DaskProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def scheduler_pid(self) -> int:
        return self.processes[0].pid

    def _start(self, workers: int, threads: int) -> None:
        scheduler_file = self.root / "scheduler.json"
        self._spawn("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0",
                    "--no-dashboard", "--scheduler-file", str(scheduler_file))  # fmt: skip
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            if self.processes[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Dask scheduler did not start: see {self.root}")
            time.sleep(0.1)
        self.address = json.loads(scheduler_file.read_text())["address"]
        for number in range(workers):
            self._spawn(f"worker-{number}", "worker", self.address, "--host", "127.0.0.1",
                        "--nthreads", str(threads), "--no-dashboard")  # fmt: skip
        self.worker_addresses = asyncio.run(self._wait_for_workers(workers))

    def _spawn(self, name: str, *args: str) -> None:
        with (self.root / f"{name}.log").open("wb") as log:
            command = [str(DASK), *args]
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)

    async def _wait_for_workers(self, count: int) -> list[str]:
        from distributed import Client

        async with Client(self.address, asynchronous=True) as client:
            await client.wait_for_workers(count, timeout=120)
            info: dict[str, Any] = client.scheduler_info()
            return sorted(info["workers"])

    def close(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


__all__ = ["DaskProcesses"]
