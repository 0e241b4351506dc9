"""B2: ``noop.map(range(N))`` then wait for all. Prints one JSON line.

Apart from the import line this file runs unchanged under Prefect (``from prefect import ...``).
With ``BENCH_PERSIST_RESULT=1`` every task's result is recorded, as for a deployed run.
"""

import json
import os
import sys
import time

from flowbus import flow, task


@task
def noop(x):
    return x


@flow
def fanout(n: int):
    futures = noop.map(range(n))
    futures.wait()


if os.environ.get("BENCH_PERSIST_RESULT"):
    fanout = fanout.with_options(persist_result=True)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    start = time.perf_counter()
    fanout(n)
    elapsed = time.perf_counter() - start
    print(json.dumps({"n": n, "seconds": elapsed, "task_runs_per_second": n / elapsed}))
