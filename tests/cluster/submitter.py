"""A service that submits runs (run on the cluster test's client host).

``python submitter.py DEPLOYMENT COUNT RATE LEDGER``: submits COUNT runs at RATE per second,
each with an idempotency key (a submission that fails is sent again until it is accepted: the
key makes it one run), follows the events stream for their completions, then waits for each to
end. Prints one JSON line: when each run was accepted and when its completion was seen (seconds
since the start), its final state, and the longest gaps between both.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from datetime import UTC, datetime

from flowbus.broker import protocol as p
from flowbus.broker import subjects
from flowbus.client import Client, ClientError
from flowbus.client.waiting import last_state

RETRYABLE = (ClientError, TimeoutError, OSError)
#: How long after the last submission every run must have ended and been recorded: far more
#: than the faults need; past it the stuck runs are reported, not waited on.
FOLLOW_SECONDS = 240
#: How long one submission is sent again before it is reported as never accepted.
SUBMIT_SECONDS = 120


class Service:
    def __init__(self, deployment: str, ledger: str) -> None:
        self.deployment = deployment
        self.ledger = ledger
        self.start = time.monotonic()
        self.accepted: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.states: dict[str, str] = {}
        self.stuck: dict[str, str] = {}
        self.refused: dict[int, str] = {}
        self.client = Client(timeout=5)

    def now(self) -> float:
        return time.monotonic() - self.start

    async def submit(self, number: int) -> None:
        deadline = time.monotonic() + SUBMIT_SECONDS
        while True:
            try:
                run = await self.client.submit(self.deployment, {"ledger": self.ledger},
                                               idempotency_key=f"cluster-{number}")  # fmt: skip
                self.accepted[run.run_id] = self.now()
                return
            except RETRYABLE as exc:
                if time.monotonic() > deadline:
                    self.refused[number] = repr(exc)
                    return
                await asyncio.sleep(0.2)

    async def watch(self) -> None:
        """When each run's completion is seen on the events stream, as a subscriber sees it."""
        since = datetime.now(UTC)
        while True:
            try:
                async for event in self.client.events(types=["flow_run.state"], since=since):
                    if event.state.type.value == "COMPLETED":
                        self.ended.setdefault(str(event.stream_id), self.now())
            except Exception:  # the stream's leader moved, say: follow again
                await asyncio.sleep(0.5)

    async def follow(self, run_id: str, deadline: float) -> None:
        """Until the run's final state is recorded, or the deadline: then what the events
        stream and the store say of it, so a stuck run is reported rather than waited on."""
        while time.monotonic() < deadline:
            try:
                final = await self.client.wait(run_id, timeout=30)
                self.states[run_id] = final.name
                return
            except RETRYABLE:
                await asyncio.sleep(0.5)
        self.stuck[run_id] = await self.diagnose(run_id)

    async def diagnose(self, run_id: str) -> str:
        """What the events stream and the store hold of a run that did not end."""
        try:
            event = await last_state(self.client.nats.jetstream(), run_id)
            seen = "nothing" if event is None else f"{event.state.name} (seq {event.seq})"
        except Exception as exc:  # the report says so
            seen = f"unreadable: {exc!r}"
        ask = p.RecordedRequest(run_id=run_id, seq=10**9, wait=1.0)  # never reached: the head
        try:
            answer = await self.client.nats.request(subjects.RECORDED, ask.dump(), timeout=5)
            head: object = p.decode(p.RecordedReply, answer.data).head
        except Exception as exc:
            head = f"unreadable: {exc!r}"
        return f"events stream: {seen}, store: seq {head}"

    async def run(self, count: int, rate: float) -> None:
        await self.client.connect()
        watcher = asyncio.create_task(self.watch())
        submissions = []
        for number in range(count):
            submissions.append(asyncio.create_task(self.submit(number)))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*submissions)
        deadline = time.monotonic() + FOLLOW_SECONDS
        await asyncio.gather(*(self.follow(run_id, deadline) for run_id in list(self.accepted)))
        deadline = time.monotonic() + 30
        while set(self.accepted) - set(self.ended) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # the last completions on the stream
        watcher.cancel()
        await self.client.close()


def longest_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(sorted(times))), default=0.0)


if __name__ == "__main__":
    deployment, count, rate, ledger = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    service = Service(deployment, ledger)
    asyncio.run(service.run(count, rate))
    report = {
        "accepted": service.accepted,
        "ended": service.ended,
        "states": service.states,
        "stuck": service.stuck,
        "refused": service.refused,
        "longest_gap_accepted": longest_gap(list(service.accepted.values())),
        "longest_gap_ended": longest_gap(list(service.ended.values())),
    }
    print(json.dumps(report))
