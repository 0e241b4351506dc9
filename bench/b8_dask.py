"""B8: ``noop.map(range(N))`` over a Dask cluster (a ``dask scheduler`` and two ``dask worker``
processes, two threads each, on loopback): task runs per second, and the scheduler's memory
over many flow runs; flowbus, and prefect-dask on the same cluster in the same sitting.

    python bench/b8_dask.py [--tasks 10000] [--repeat 3] [--memory-runs 100]
    python bench/b8_dask.py --python /tmp/b8venv/bin/python   # with prefect-dask installed
    python bench/b8_dask.py --python ... --systems prefect --tasks 100 --memory-runs 10

``--python`` names an interpreter whose environment has flowbus (``pip install -e .[dask]``),
prefect and prefect-dask: the cluster and both clients then run from it (one Dask, one
cloudpickle), and a ``prefect server`` is started for Prefect's runs (its workers report to
it). Without it, flowbus alone from this environment. Prints a JSON line per measurement and
a markdown table at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scratch import scratch_folder

CLIENT = r"""
import json, sys, time
system, address, tasks, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if system == "flowbus":
    from flowbus import flow, task
    from flowbus.task_runners import DaskTaskRunner
else:
    from prefect import flow, task
    from prefect_dask import DaskTaskRunner

@task
def noop(x):
    return x

@flow(task_runner=DaskTaskRunner(address=address))
def fan_out(n: int) -> int:
    return len([f.result() for f in noop.map(range(n))])

times = []
for _ in range(runs):
    start = time.perf_counter()
    assert fan_out(tasks) == tasks
    times.append(time.perf_counter() - start)
print(json.dumps({"system": system, "tasks": tasks, "runs": runs, "seconds": times}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


def client(python: str, system: str, address: str, tasks: int, runs: int) -> list[float]:
    done = subprocess.run([python, "-c", CLIENT, system, address, str(tasks), str(runs)],
                          capture_output=True, text=True, env=os.environ)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{system} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    seconds: list[float] = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return seconds


def start_prefect_server(python: str, root: Path) -> subprocess.Popen[bytes]:
    port = free_port()
    os.environ["PREFECT_HOME"] = str(root / "prefect")
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    prefect = str(Path(python).parent / "prefect")
    with (root / "prefect-server.log").open("wb") as log:
        server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port",
                                   str(port)], stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    import urllib.request

    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
            return server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("prefect server did not start") from None
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-runs", type=int, default=100)
    parser.add_argument("--python", default=None, help="an environment with prefect-dask too")
    parser.add_argument(
        "--systems", default=None, help="flowbus,prefect (default: what --python allows)"
    )
    args = parser.parse_args()
    python = args.python or sys.executable
    systems = ["flowbus", "prefect"] if args.python else ["flowbus"]
    if args.systems:
        systems = args.systems.split(",")
    root = scratch_folder("flowbus-b8-")
    os.environ["FLOWBUS_HOME"] = str(root / "flowbus")
    server = start_prefect_server(python, root) if "prefect" in systems else None
    # The cluster from the chosen environment (its dask), as DaskProcesses starts it.
    launcher = (
        "import json, sys, time, pathlib\n"
        "from flowbus.testing.dask import DaskProcesses\n"
        "c = DaskProcesses(pathlib.Path(sys.argv[1]), workers=2, threads=2)\n"
        "print(json.dumps({'address': c.address, 'pid': c.scheduler_pid}), flush=True)\n"
        "sys.stdin.read()\n"
        "c.close()\n"
    )
    cluster = subprocess.Popen([python, "-c", launcher, str(root)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert cluster.stdout is not None and cluster.stdin is not None
    started = json.loads(cluster.stdout.readline())
    address, scheduler_pid = started["address"], started["pid"]
    results: dict[str, dict[str, float]] = {s: {} for s in systems}
    try:
        rates: dict[str, list[float]] = {s: [] for s in systems}
        for _ in range(args.repeat):  # alternately, so drift falls on both alike
            for system in systems:
                [seconds] = client(python, system, address, args.tasks, 1)
                rates[system].append(args.tasks / seconds)
                print(json.dumps({"system": system, "task_runs_per_second": args.tasks / seconds}))
        for system in systems:
            results[system]["task runs/s (median)"] = statistics.median(rates[system])
        if args.memory_runs:
            for system in systems:
                # In two halves: warming up may grow it once; flat means the second half adds
                # (about) nothing.
                samples = [rss_mib(scheduler_pid)]
                for _ in range(2):
                    client(python, system, address, 100, args.memory_runs // 2)
                    time.sleep(2)  # the scheduler forgets released tasks at once; let it settle
                    samples.append(rss_mib(scheduler_pid))
                grown = {
                    "scheduler MiB before": samples[0],
                    "MiB added, first half of the runs": samples[1] - samples[0],
                    "MiB added, second half": samples[2] - samples[1],
                }
                results[system].update(grown)
                print(json.dumps({"system": system, "runs": args.memory_runs, **grown}))
    finally:
        cluster.stdin.close()
        cluster.wait(60)
        if server is not None:
            server.terminate()
            server.wait(30)
    columns = sorted({key for figures in results.values() for key in figures})
    print("\n| system | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for system, figures in results.items():
        print(f"| {system} | " + " | ".join(f"{figures.get(c, 0):.1f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
