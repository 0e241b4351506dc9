"""B1: a flow calling a no-op task N times in sequence. Prints one JSON line.

Apart from the import line this file runs unchanged under Prefect (``from prefect import ...``).
With ``BENCH_PERSIST_RESULT=1`` every task's result is recorded, as for a deployed run.
"""

import json
import os
import sys
import time

from flowbus import flow, task


@task
def noop():
    return None


@flow
def sequential(n: int):
    for _ in range(n):
        noop()


if os.environ.get("BENCH_PERSIST_RESULT"):
    sequential = sequential.with_options(persist_result=True)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    start = time.perf_counter()
    sequential(n)
    elapsed = time.perf_counter() - start
    print(json.dumps({"n": n, "seconds": elapsed, "per_task_us": elapsed / n * 1e6}))
