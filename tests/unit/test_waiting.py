"""A waiter finds its run's latest state by the run's own order, not the stream's: the
orchestrator publishes the states it records after committing them, which can land after the
agent's later ones (a wait on such a run hung before)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from nats.js.errors import NotFoundError

from flowbus.client.waiting import RunWaiters
from flowbus.engine.ids import new_id
from flowbus.engine.records import make_record, state_dict
from flowbus.engine.states import Completed, Pending, Running, Scheduled


class FakeStream:
    """A stream's messages in stream order; ``get_msg`` as JetStream's direct get answers."""

    def __init__(self, bodies: list[bytes]) -> None:
        self.bodies = bodies

    async def get_msg(self, stream: str, seq: int, subject: str, next: bool) -> Any:
        for position, body in enumerate(self.bodies, start=1):
            if position >= seq:
                return SimpleNamespace(seq=position, data=body, headers=None)
        raise NotFoundError


async def test_the_latest_state_is_the_runs_last_not_the_streams() -> None:
    run = new_id()

    def state(seq: int, made: Any) -> bytes:
        kind = "flow_run.created" if seq == 1 else "flow_run.state"
        fields: dict[str, Any] = {"state": state_dict(made)}
        if seq == 1:
            fields.update(flow_name="f", name="n")
        return make_record(run, seq, kind, fields).body()

    # The orchestrator's Pending (seq 2) reached the stream after the agent's Completed.
    stream = FakeStream([state(1, Scheduled()), state(3, Running()), state(4, Completed()),
                         state(2, Pending())])  # fmt: skip
    waiters = RunWaiters(stream)
    latest = await waiters._last_state(run)
    assert latest is not None and (latest.seq, latest.state.name) == (4, "Completed")
    assert await RunWaiters(FakeStream([]))._last_state(run) is None
