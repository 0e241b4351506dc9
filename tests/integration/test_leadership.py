"""The leader's lease (agents/leadership.py) against a real nats-server: a leader whose start
outlasts its lease keeps the lead, and one whose start fails gives the lease up at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import nats
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from flowbus.agents.leadership import BUCKET, Leadership, Term
from flowbus.broker import EmbeddedNatsServer

LEASE = 4.0  # renewed every second: a busy machine has three seconds of margin


@pytest.fixture
async def client(nats_server: EmbeddedNatsServer) -> AsyncIterator[Client]:
    connection = await nats.connect(nats_server.url)
    with contextlib.suppress(NotFoundError):
        await connection.jetstream().delete_key_value(BUCKET)
    yield connection
    await connection.close()


class Candidate:
    """One orchestrator's campaign, with what its elected/deposed callbacks saw."""

    def __init__(self, client: Client, name: str, start: Callable[[], object]) -> None:
        self.terms: list[int] = []
        self.deposed = 0
        self._start = start
        self.leadership = Leadership(client.jetstream(), LEASE, self._elected, self._deposed,
                                     member=name)  # fmt: skip

    async def _elected(self, term: Term) -> None:
        self.terms.append(term.token)
        result = self._start()
        if asyncio.iscoroutine(result):
            await result

    async def _deposed(self) -> None:
        self.deposed += 1


async def test_a_leader_whose_start_outlasts_its_lease_keeps_the_lead(client: Client) -> None:
    """Reading every unfinished run can take longer than a lease: the lease is renewed while
    the leader starts, so it does not step down the moment it is ready (and nobody else is
    elected meanwhile)."""
    slow = Candidate(client, "slow", lambda: asyncio.sleep(LEASE * 2.5))
    other = Candidate(client, "other", lambda: None)
    await slow.leadership.open()
    await other.leadership.open()
    await slow.leadership.campaign_once()  # returns once started
    await other.leadership.campaign_once()
    await slow.leadership.campaign_once()
    assert slow.leadership.leading and slow.deposed == 0
    assert other.terms == [] and not other.leadership.leading


async def test_a_leader_whose_start_fails_gives_the_lease_up_at_once(client: Client) -> None:
    """Not a leader in name only, with no recorder: it steps down and deletes the lease, so
    another takes over in its next round rather than after a lease."""

    def fail() -> None:
        raise RuntimeError("the store is locked")

    broken = Candidate(client, "broken", fail)
    other = Candidate(client, "other", lambda: None)
    await broken.leadership.open()
    await other.leadership.open()
    await broken.leadership.campaign_once()
    assert len(broken.terms) == 1 and broken.deposed == 1
    assert broken.leadership.term is None
    await other.leadership.campaign_once()
    assert other.leadership.leading and len(other.terms) == 1
