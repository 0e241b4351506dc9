"""Which orchestrator leads: a lease on one key of a NATS KV bucket, with a fencing token.

Any number of orchestrators serve requests together; work that must happen once at a time (the
recorder, the janitor, the scheduler, the automation engine, slot grants) is the leader's. The
lease is the key ``orchestrator`` in the ``flowbus_leader`` bucket, whose entries expire
``lease_seconds`` after they were written (the bucket's TTL):

- a candidate takes it with ``create`` (refused while the key holds a live entry);
- the leader renews it with ``update(last=revision)`` every quarter lease: an update on a
  revision that is no longer the key's last fails, so two leaders can never both renew;
- the leader believes it leads only until ``renewed_at + lease * SAFETY``, measured on its own
  monotonic clock from *before* the renewal was sent: the server expires the entry a full
  lease after it received it, so a leader that is paused, partitioned or slow stops acting
  before anyone else can be elected;
- a leader that stops cleanly deletes the key, so another takes over at once instead of after a
  lease.

The term (the key's revision when it was won) is the fencing token: it grows with each
election, is logged with every change of leader, and is written into the leader-only events
(``leader_term``) so a store audit can tell which term decided what.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from nats.js.api import KeyValueConfig
from nats.js.client import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from flowbus.broker.streams import (
    configured_replicas,
    ensure_bucket,
    known_servers,
    replicas_for,
)

log = structlog.get_logger("flowbus.leadership")

BUCKET = "flowbus_leader"
KEY = "orchestrator"
#: The share of the lease a leader acts on after a renewal (the rest is margin).
SAFETY = 0.75


@dataclass(frozen=True)
class Term:
    """One leader's tenure: who, and the fencing token (grows with each election)."""

    member: str
    token: int


def still_leading(renewed_at: float | None, lease_seconds: float, now: float) -> bool:
    """Whether a leader that last renewed at ``renewed_at`` (its monotonic clock, taken before
    the renewal was sent) may still act at ``now``."""
    return renewed_at is not None and now < renewed_at + lease_seconds * SAFETY


def member_name() -> str:
    """This process, uniquely: a restarted orchestrator never mistakes an old lease for its own."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Leadership:
    """Campaign for the lease until ``stop()``; call ``elected``/``deposed`` on each change."""

    def __init__(
        self,
        js: JetStreamContext,
        lease_seconds: float,
        elected: Callable[[Term], Awaitable[None]],
        deposed: Callable[[], Awaitable[None]],
        member: str | None = None,
    ) -> None:
        self.js = js
        self.lease_seconds = lease_seconds
        self.member = member or member_name()
        self._elected = elected
        self._deposed = deposed
        self._kv: KeyValue | None = None
        self._revision = 0
        self._renewed_at: float | None = None
        self.term: Term | None = None
        self._stopping = asyncio.Event()

    @property
    def leading(self) -> bool:
        """Whether this process may act as the leader now."""
        return self.term is not None and still_leading(
            self._renewed_at, self.lease_seconds, time.monotonic()
        )

    async def open(self) -> None:
        replicas = replicas_for(known_servers(self.js._nc), configured_replicas())
        config = KeyValueConfig(bucket=BUCKET, history=1, ttl=self.lease_seconds,
                                replicas=replicas)  # fmt: skip
        self._kv = await ensure_bucket(self.js, config)

    async def campaign_once(self) -> None:
        """One round: take the lease if it is free, renew it if it is ours; notice its loss."""
        assert self._kv is not None
        sent_at = time.monotonic()
        try:
            if self.term is None:
                revision = await self._kv.create(KEY, self.member.encode())
                self._revision, self._renewed_at = revision, sent_at
                self.term = Term(self.member, revision)
                log.info("elected leader", member=self.member, term=revision)
                await self._take_up(self.term)
            else:
                await self._renew()
        except KeyWrongLastSequenceError:
            if self.term is not None:  # another took the key: our lease had run out
                await self._step_down("another orchestrator holds the lease")
        except Exception as exc:  # NATS away: keep acting only while the lease lasts
            log.warning("leader lease not reached", error=repr(exc))
        if self.term is not None and not self.leading:
            await self._step_down("the lease ran out before it could be renewed")

    async def _renew(self) -> None:
        assert self._kv is not None
        sent_at = time.monotonic()
        self._revision = await self._kv.update(KEY, self.member.encode(), last=self._revision)
        self._renewed_at = sent_at

    async def _take_up(self, term: Term) -> None:
        """The leader's work begins (``elected``), the lease renewed meanwhile: reading every
        unfinished run can outlast a lease on a busy store, and a leader that lost its lease
        while starting would step down at once, again and again, with nothing ever recorded.
        If starting fails, the lead is given up at once, for another (or a later round)."""
        started = asyncio.Event()
        renewing = asyncio.create_task(self._renew_until(started), name="leader-renewal")
        failure: Exception | None = None
        try:
            await self._elected(term)
        except Exception as exc:
            failure = exc
        finally:
            # Not cancelled: a renewal cut off after it was sent would leave the revision
            # unknown here, and the next renewal would fail as if another held the lease.
            started.set()
            with contextlib.suppress(Exception):
                await renewing
        if failure is not None:
            log.error("could not take up the lead; giving it up", error=repr(failure))
            try:
                if self.term is not None:
                    await self._step_down(f"taking up the lead failed: {failure!r}")
            finally:
                await self._give_up()

    async def _renew_until(self, started: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(started.wait(), self.lease_seconds / 4)
                return
            try:
                await self._renew()
            except KeyWrongLastSequenceError:
                return  # lost: the round after the start steps down
            except Exception as exc:
                log.warning("leader lease not reached while starting", error=repr(exc))

    async def _step_down(self, why: str) -> None:
        assert self.term is not None
        log.warning("stepping down", member=self.member, term=self.term.token, reason=why)
        self.term, self._renewed_at = None, None
        await self._deposed()

    async def run(self) -> None:
        """Campaign (or renew) every quarter lease until stopped."""
        while not self._stopping.is_set():
            await self.campaign_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.lease_seconds / 4)

    def stop(self) -> None:
        self._stopping.set()

    async def resign(self) -> None:
        """Give the lease up (a clean stop), so another orchestrator need not wait it out."""
        if self.term is None or self._kv is None:
            return
        self.term, self._renewed_at = None, None
        await self._give_up()
        log.info("resigned the lead", member=self.member)

    async def _give_up(self) -> None:
        """Delete the lease's key, if it is still the one this process wrote last."""
        if self._kv is not None:
            with contextlib.suppress(Exception):
                await self._kv.delete(KEY, last=self._revision)


__all__ = ["Leadership", "Term", "still_leading"]
