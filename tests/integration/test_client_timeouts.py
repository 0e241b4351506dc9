"""A submission the orchestrator does not answer in time: the client's error says the run may
still be made, and how to try again without making it twice (an idempotency key)."""

from __future__ import annotations

import nats
import pytest
from nats.aio.msg import Msg

from flowbus.broker import EmbeddedNatsServer, subjects
from flowbus.client import Client, ClientError


async def test_a_submission_left_unanswered_says_the_run_may_still_be_made(
    nats_server: EmbeddedNatsServer,
) -> None:
    busy = await nats.connect(nats_server.url)
    taken: list[Msg] = []

    async def take_and_never_answer(message: Msg) -> None:  # an orchestrator far behind
        taken.append(message)

    await busy.subscribe(subjects.SUBMIT, cb=take_and_never_answer)
    await busy.flush()
    try:
        async with Client(nats_server.url, timeout=0.5) as client:
            with pytest.raises(ClientError) as plain:
                await client.submit("etl/daily")
            with pytest.raises(ClientError) as keyed:
                await client.submit("etl/daily", idempotency_key="2026-12-08")
        assert plain.value.code == "timeout" and "may still be made" in str(plain.value)
        assert "submit with an idempotency_key" in str(plain.value)
        assert "same idempotency_key returns that run" in str(keyed.value)
        assert len(taken) == 2  # each request reached the orchestrator
    finally:
        await busy.close()
