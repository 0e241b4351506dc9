"""The seed example end to end: a flaky HTTP source, retries, the output file, the CLI's view."""

from __future__ import annotations

import csv
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, Shell

IRIS = (ROOT / "examples" / "data" / "iris.csv").read_bytes()


class FlakyServer:
    """Answers 503 to the first ``failures`` requests, then serves the iris CSV."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                if owner.requests <= owner.failures:
                    self.send_error(503, "try again later")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Content-Length", str(len(IRIS)))
                self.end_headers()
                self.wfile.write(IRIS)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/iris.csv"

    def __enter__(self) -> FlakyServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky_source() -> Iterator[FlakyServer]:
    with FlakyServer(failures=2) as server:
        yield server


def test_etl_example_retries_past_two_503s(
    shell: Shell, flaky_source: FlakyServer, tmp_path: Path
) -> None:
    out = tmp_path / "iris_processed.csv"
    shell.run("examples/etl_pipeline.py", "--url", flaky_source.url, "--out", str(out), timeout=90)
    assert flaky_source.requests == 3

    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 150
    assert list(rows[0]) == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
        "species",
        "processed_at",
    ]
    assert all(row["processed_at"] for row in rows)

    [run] = shell.flowbus_json("runs", "ls", "--flow", "etl-flow")["runs"]
    assert run["state_name"] == "Completed"
    assert run["parameters"] == {"url": flaky_source.url, "filename": str(out)}
    assert run["result_summary"] == "150"

    detail = shell.flowbus_json("runs", "show", run["id"])
    tasks = {t["task_key"].rsplit(".", 1)[-1]: t for t in detail["task_runs"]}
    assert set(tasks) == {"extract_data", "transform_data", "load_data"}
    extract = tasks["extract_data"]
    assert extract["retries"] == 2
    assert extract["run_count"] == 3
    assert extract["state_name"] == "Completed"
    assert [s["name"] for s in extract["state_history"]] == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Retrying",
        "AwaitingRetry",
        "Retrying",
        "Completed",
    ]
    assert "503" in extract["state_history"][2]["message"]
    assert all(t["retries"] == 0 for name, t in tasks.items() if name != "extract_data")
    assert [s["name"] for s in detail["state_history"]] == ["Pending", "Running", "Completed"]
    assert detail["duration_seconds"] >= 10  # two 5-second retry delays

    logs = shell.flowbus_json("runs", "logs", run["id"])["logs"]
    messages = [line["message"] for line in logs]
    assert f"wrote 150 rows to {out}" in messages
    assert any("503" in m for m in messages)

    assert "projections match" in shell.flowbus("store", "verify").stdout


def test_etl_example_works_offline_with_the_bundled_data(shell: Shell, tmp_path: Path) -> None:
    out = tmp_path / "offline.csv"
    shell.run("examples/etl_pipeline.py", "--out", str(out))
    assert len(out.read_text().splitlines()) == 151
