"""Who may record a claimed run's events: the agent its claim was granted to, proven per event.

A claim opens attempt ``n`` of a run; the orchestrator answers the claiming agent (on its own
reply inbox) with an *attempt key*, ``HMAC-SHA256(fence key, "<run>/<n>")``. Every event the
agent publishes for the run carries the fence headers (``Flowbus-Run``, ``Flowbus-Attempt``) and
``Flowbus-Fence-Mac``, an HMAC of the event's bytes under the attempt key. The recorder derives
the same key from the fence headers and its fence key, and refuses an event whose MAC does not
match: a publisher who was not granted the attempt cannot make one, whatever headers it copies.

Only orchestrators hold the fence key (``FLOWBUS_FENCE_KEYS``, or ``$FLOWBUS_HOME/keys/fence.key``
on one machine); several orchestrators on several hosts share it, and rotate it as every key
list rotates (``engine/keys.py``). Deriving keys instead of storing them keeps a failover
simple: any orchestrator checks any attempt, with nothing written per claim.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from flowbus.broker import subjects
from flowbus.broker.protocol import ClaimGrant
from flowbus.engine.keys import FENCE_KEYS

MAC_HEADER = "Flowbus-Fence-Mac"


def attempt_key(key: bytes, run_id: str, attempt: int) -> str:
    """The attempt key (hex) of attempt ``attempt`` of ``run_id`` under one fence key."""
    return hmac.new(key, f"{run_id}/{attempt}".encode(), hashlib.sha256).hexdigest()


def fence_headers(run_id: str, attempt: int, key: bytes | None, body: bytes) -> dict[str, str]:
    """The headers of an event of a claimed run (the MAC when the grant gave a key: the
    attempt key's bytes, ``bytes.fromhex`` of the grant's ``attempt_key``)."""
    headers = {subjects.RUN_HEADER: run_id, subjects.ATTEMPT_HEADER: str(attempt)}
    if key:
        headers[MAC_HEADER] = hmac.new(key, body, hashlib.sha256).hexdigest()
    return headers


class FenceChecker:
    """An orchestrator's side: grants attempt keys and checks events' MACs."""

    def __init__(self, keys: list[bytes] | None = None) -> None:
        self.keys = keys if keys is not None else FENCE_KEYS.keys(create=True)
        self._derived: dict[tuple[str, int], list[bytes]] = {}

    def grant(self, run_id: str, attempt: int) -> str:
        return attempt_key(self.keys[0], run_id, attempt)

    def keyed(self, grant: ClaimGrant) -> ClaimGrant:
        """``grant`` with its attempt's key, which its agent signs the run's events with."""
        return grant.model_copy(update={"attempt_key": self.grant(grant.run_id, grant.attempt)})

    def _keys_of(self, run_id: str, attempt: int) -> list[bytes]:
        found = self._derived.get((run_id, attempt))
        if found is None:
            if len(self._derived) > 65536:  # a cache, not a record: start again
                self._derived.clear()
            found = [bytes.fromhex(attempt_key(k, run_id, attempt)) for k in self.keys]
            self._derived[(run_id, attempt)] = found
        return found

    def problem(self, run_id: str, attempt: int, body: bytes, headers: Mapping[str, str]) -> str:
        """Why an event with this fence may not be recorded ("" when it may)."""
        mac = headers.get(MAC_HEADER)
        if not mac:
            return f"no {MAC_HEADER}: not published by the agent granted attempt {attempt}"
        for key in self._keys_of(run_id, attempt):
            expected = hmac.new(key, body, hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected, mac):
                return ""
        return f"a {MAC_HEADER} no attempt key of attempt {attempt} made: forged"
