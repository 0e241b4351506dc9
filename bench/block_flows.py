"""The deployment bench/block_load.py runs: a flow that loads one secret block many times."""

import time

from flowbus import Secret, flow


@flow
def loads_blocks(times: int = 200) -> list[float]:
    """Load the block ``secret/bench-key`` ``times`` times; the seconds each load took."""
    took = []
    for _ in range(times):
        start = time.perf_counter()
        Secret.load("bench-key").get()
        took.append(time.perf_counter() - start)
    return took
