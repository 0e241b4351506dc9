"""The seed example: extract a CSV over HTTP (with retries), transform it, load it to a file.

Run it locally:

    python examples/etl_pipeline.py --url https://example.org/iris.csv --out /tmp/iris.csv

With no ``--url`` it serves the bundled ``examples/data/iris.csv`` from a loopback HTTP server, so
it works offline. Needs pandas (``pip install 'flowbus[examples]'``). Apart from the flowbus
import line it runs unchanged under Prefect, for comparison (B0 in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import io
import threading
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from flowbus import flow, get_run_logger, task

DATA_DIR = Path(__file__).parent / "data"


@task(retries=3, retry_delay_seconds=5)
def extract_data(url: str) -> pd.DataFrame:
    """Download a CSV; an HTTP error raises, so the task is retried."""
    logger = get_run_logger()
    logger.info("downloading %s", url)
    with urllib.request.urlopen(url, timeout=30) as response:
        payload = response.read()
    frame = pd.read_csv(io.BytesIO(payload))
    logger.info("downloaded %d rows (%d bytes)", len(frame), len(payload))
    return frame


@task
def transform_data(df: pd.DataFrame) -> pd.DataFrame:
    """Stamp every row with the time it was processed."""
    transformed = df.copy()
    transformed["processed_at"] = datetime.now(UTC).isoformat()
    return transformed


@task
def load_data(df: pd.DataFrame, filename: str) -> int:
    """Write the rows to a CSV file; returns how many were written."""
    Path(filename).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(filename, index=False)
    return len(df)


@flow(log_prints=True)
def etl_flow(url: str, filename: str) -> int:
    """Extract, transform, load."""
    raw = extract_data(url)
    transformed = transform_data(raw)
    rows = load_data(transformed, filename)
    print(f"wrote {rows} rows to {filename}")
    return rows


@functools.cache
def serve_bundled_data() -> str:
    """Serve examples/data over HTTP on a free loopback port; returns the iris.csv URL."""
    handler = functools.partial(_QuietHandler, directory=str(DATA_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, name="example-data", daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/iris.csv"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="CSV to download (default: the bundled iris.csv)")
    parser.add_argument("--out", default="out/iris_processed.csv", help="file to write")
    args = parser.parse_args()
    etl_flow(args.url or serve_bundled_data(), args.out)


if __name__ == "__main__":
    main()
