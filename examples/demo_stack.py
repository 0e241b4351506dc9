"""The seed ETL flow through the whole stack: what ``make demo`` runs.

1. ``flowbus up`` starts an embedded nats-server, the orchestrator and one agent;
2. ``flowbus deploy`` records the deployment ``etl-flow/daily`` on the ``default`` queue;
3. a handful of runs are submitted with ``flowbus.Client``, and followed live from their events;
4. a summary table is printed (run, state, duration, rows written), and the stack is stopped.

Everything uses $FLOWBUS_HOME (``make demo`` points it at ``./.demo``).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from flowbus import Client
from flowbus.engine.events import FlowRunStateChanged

sys.path.insert(0, str(Path(__file__).parent))
from etl_pipeline import serve_bundled_data

ROOT = Path(__file__).resolve().parents[1]
RUNS = 5
console = Console(highlight=False)


def start_stack() -> tuple[subprocess.Popen[bytes], str]:
    """``flowbus up`` in the background (its output in $FLOWBUS_HOME/up.log); returns it and
    the NATS URL it printed."""
    home = Path(os.environ.get("FLOWBUS_HOME", Path.home() / ".flowbus"))
    home.mkdir(parents=True, exist_ok=True)
    log = home / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "flowbus", "up", "--port", "0"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while "flowbus is up" not in (text := log.read_text()):
        if up.poll() is not None or time.monotonic() > deadline:
            up.kill()
            raise SystemExit("flowbus up did not start:\n" + text)
        time.sleep(0.05)
    for line in text.splitlines():
        if not line.startswith("20"):  # its own log lines carry a date
            console.print(f"  [dim]{line}[/]")
    url = re.search(r"nats://127\.0\.0\.1:\d+", text)
    assert url is not None
    return up, url.group(0)


def deploy() -> None:
    subprocess.run(
        [sys.executable, "-m", "flowbus", "deploy", "examples/etl_pipeline.py:etl_flow",
         "--name", "daily", "--queue", "default"],
        cwd=ROOT,
        check=True,
    )  # fmt: skip


def progress_table(runs: dict[str, dict[str, object]]) -> Table:
    table = Table("run", "state", "duration", "rows written", "output")
    for info in runs.values():
        state = str(info["state"])
        colour = {"Completed": "green", "Running": "cyan", "Failed": "red"}.get(state, "blue")
        duration = info.get("duration")
        table.add_row(
            str(info["name"]),
            f"[{colour}]{state}[/]",
            f"{duration:.2f} s" if isinstance(duration, float) else "-",
            str(info.get("rows") or "-"),
            str(info["out"]),
        )
    return table


async def submit_and_follow(url: str) -> dict[str, dict[str, object]]:
    data_url = serve_bundled_data()
    runs: dict[str, dict[str, object]] = {}
    since = datetime.now(UTC)  # follow every event from here, including those of the submits
    async with Client(url) as client:
        for day in range(1, RUNS + 1):
            out = ROOT / "out" / f"iris_2026-11-{day:02d}.csv"
            submitted = await client.submit(
                "etl-flow/daily", {"url": data_url, "filename": str(out)}
            )
            runs[submitted.run_id] = {
                "name": submitted.name, "state": "Scheduled", "out": out.relative_to(ROOT),
                "submitted": time.perf_counter(),
            }  # fmt: skip
        with Live(progress_table(runs), console=console, refresh_per_second=10) as live:
            finished = 0
            async for event in client.events(types=["flow_run.state"], since=since):
                info = runs.get(str(event.stream_id))
                if info is None or not isinstance(event, FlowRunStateChanged):
                    continue
                info["state"] = event.state.name
                if event.state.type.is_terminal:
                    info["duration"] = time.perf_counter() - float(str(info["submitted"]))
                    info["rows"] = event.result
                    finished += 1
                live.update(progress_table(runs))
                if finished == RUNS:
                    break
    return runs


def main() -> int:
    console.print("[bold]1. flowbus up[/] (embedded nats-server, orchestrator, one agent)")
    up, url = start_stack()
    try:
        console.print("[bold]2. flowbus deploy[/] examples/etl_pipeline.py:etl_flow -n daily")
        deploy()
        console.print(f"[bold]3. submitting {RUNS} runs[/] and following their events")
        runs = asyncio.run(asyncio.wait_for(submit_and_follow(url), 120))
    finally:
        console.print("\n[bold]4. stopping the stack[/]")
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()  # its nats-server dies with it (parent-death signal)
            raise
    completed = sum(info["state"] == "Completed" for info in runs.values())
    console.print(f"{completed} of {RUNS} runs completed; `flowbus runs ls` lists them.")
    return 0 if completed == RUNS else 1


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
