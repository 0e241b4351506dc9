"""Screenshots of the web UI for docs/screenshots/: a stack with the seed ETL deployment, a few
runs (one of them failing), then Debian's chromium through Playwright.

    FLOWBUS_HOME=$(mktemp -d) python examples/ui_screenshots.py
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flowbus import Client

sys.path.insert(0, str(Path(__file__).parent))
from etl_pipeline import serve_bundled_data

ROOT = Path(__file__).resolve().parents[1]
DATA_URL = "https://data.example.com/iris.csv"
AUTOMATION = """
- name: raw-file-to-etl
  description: a file landed in the raw bucket
  trigger: {kind: event, match: {type: file.uploaded, labels: {bucket: raw}}}
  actions:
    - {kind: run-deployment, deployment: etl-flow/daily,
       parameters: {url: "{{ event.resource }}"}}
- name: etl-failed
  trigger: {kind: event, match: {type: flow-run.Failed, labels: {deployment: etl-flow/*}}}
  actions: [{kind: webhook, block: ops}]
- name: etl-late
  trigger: {kind: absence, match: {type: flow-run.Completed, labels: {deployment: etl-flow/daily}},
            cron: "0 7 * * *", timezone: Europe/Paris, within: 86400}
  actions: [{kind: publish, subject: flowbus.custom.alerts.etl, payload: "{{ event }}"}]
"""
OUT = ROOT / "docs" / "screenshots"


def start_stack(home: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    log = home / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "flowbus", "up", "--port", "0", "--api-port", "0"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while "flowbus is up" not in (text := log.read_text()):
        if up.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(text)
        time.sleep(0.05)
    nats = re.search(r"nats://127\.0\.0\.1:\d+", text)
    api = re.search(r"(http://127\.0\.0\.1:\d+)/api/v1", text)
    assert nats is not None and api is not None
    return up, nats.group(0), api.group(1)


async def make_runs(nats_url: str) -> str:
    data = serve_bundled_data()
    out = Path(tempfile.mkdtemp())
    async with Client(nats_url) as client:
        runs = [
            await client.submit("etl-flow/daily", {"url": data, "filename": str(out / f"{i}.csv")})
            for i in range(4)
        ]
        failing = await client.submit(
            "etl-flow/daily", {"url": data + ".missing", "filename": "x.csv"}
        )
        for run in [*runs, failing]:
            await client.wait(run.run_id, timeout=60)
        await asyncio.sleep(2)
        return runs[0].run_id


def main() -> None:
    from playwright.sync_api import sync_playwright

    home = Path(os.environ.get("FLOWBUS_HOME") or tempfile.mkdtemp())
    os.environ["FLOWBUS_HOME"] = str(home)
    up, nats_url, api = start_stack(home)
    try:
        automation = home / "automations.yaml"
        automation.write_text(AUTOMATION)
        for command in (
            [
                "deploy",
                "examples/etl_pipeline.py:etl_flow",
                "-n",
                "daily",
                "-q",
                "default",
                "-p",
                f"url={DATA_URL}",
                "-p",
                "filename=/tmp/iris.csv",
                "--cron",
                "0 6 * * *",
                "--timezone",
                "Europe/Paris",
                "--overlap",
                "skip",
            ],
            ["limit", "set", "warehouse", "3"],
            ["block", "set", "webhook/ops", "url=https://hooks.example.com/etl", "token=t0k3n"],
            ["block", "set", "secret/warehouse-password", "value=hunter2hunter2"],
            ["variable", "set", "region", "eu-west-1"],
            ["automation", "create", str(automation)],
        ):
            subprocess.run([sys.executable, "-m", "flowbus", *command], cwd=ROOT, check=True,
                           capture_output=True)  # fmt: skip
        run_id = asyncio.run(make_runs(nats_url))
        OUT.mkdir(parents=True, exist_ok=True)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            for name, path in [
                ("dashboard", "#/dashboard"),
                ("runs", "#/runs"),
                ("run", f"#/runs/{run_id}"),
                ("deployment", "#/deployments/etl-flow/daily"),
                ("queues", "#/queues"),
                ("events", "#/events"),
                ("automations", "#/automations"),
                ("config", "#/config"),
            ]:
                page.goto(f"{api}/ui/{path}")
                page.wait_for_timeout(1500)
                # The feed grows without end: its first screen is what a user sees.
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=name != "events")
                print(f"wrote {OUT / f'{name}.png'}")
            browser.close()
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)


if __name__ == "__main__":
    main()
