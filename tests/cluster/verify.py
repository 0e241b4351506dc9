"""What the store says of some runs (run on the cluster test's client host, which reaches the
store's host): ``python verify.py IDS_FILE``. Prints one JSON line: for each run its state
names in order and how many attempts (claims) it had."""

from __future__ import annotations

import asyncio
import json
import sys

from flowbus.engine.store import store_from_url


async def main(ids: list[str]) -> dict[str, object]:
    store = store_from_url()
    await store.open()
    try:
        runs: dict[str, object] = {}
        for run_id in ids:
            events = await store.read_stream(run_id)
            changes = [e.data for e in events
                       if "state" in e.data and e.type.startswith("flow_run.")]  # fmt: skip
            states = [data["state"]["name"] for data in changes]
            attempts = sum(1 for e in events if e.data.get("attempt"))
            # Each state with its message and agent, for a failure's report.
            history = [f"{d['state']['name']}: {d['state'].get('message') or ''} "
                       f"({d.get('agent') or ''})" for d in changes]  # fmt: skip
            runs[run_id] = {"states": states, "attempts": attempts, "history": history}
        return {"runs": runs, "problems": await store.verify_projections()}
    finally:
        await store.close()


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        wanted = json.load(handle)
    print(json.dumps(asyncio.run(main(wanted))))
