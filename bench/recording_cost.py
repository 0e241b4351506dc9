"""What recording task results costs: B1 (1,000 sequential task runs) and B2 (a map of 10,000)
with and without results recorded (as for a deployed run, ``persist_result=True``), each
measured alternately in fresh processes so the machine's drift falls on both alike.

``python bench/recording_cost.py [--repeat 5]``; prints a JSON line and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from scratch import scratch_folder

HERE = Path(__file__).parent


def measure(script: str, n: str, record: bool) -> dict[str, float]:
    env = {**os.environ, "FLOWBUS_HOME": str(scratch_folder("flowbus-bench-"))}
    if record:
        env["BENCH_PERSIST_RESULT"] = "1"
    done = subprocess.run([sys.executable, str(HERE / script), n], env=env, check=True,
                          capture_output=True, text=True)  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    cases = {
        "B1 µs per task run": ("b1_sequential.py", "1000", "per_task_us"),
        "B2 task runs/s": ("b2_fanout.py", "10000", "task_runs_per_second"),
    }
    figures: dict[str, dict[str, float]] = {}
    for label, (script, n, field) in cases.items():
        samples: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(repeat):
            for record in (False, True):
                samples[record].append(measure(script, n, record)[field])
        figures[label] = {
            "off": statistics.median(samples[False]),
            "on": statistics.median(samples[True]),
        }
    print(json.dumps(figures))
    print("| workload | results not recorded | recorded | change |\n|---|---|---|---|")
    for label, row in figures.items():
        change = (row["on"] - row["off"]) / row["off"] * 100
        print(f"| {label} | {row['off']:,.1f} | {row['on']:,.1f} | {change:+.0f}% |")


if __name__ == "__main__":
    main()
