"""Concurrency slots for a process by hand whose profile names a server: tag limits and global
limits (``concurrency``, ``rate_limit``) are taken from the server's orchestrators through its
API (``flowbus/api/slots.py``), so they bind together with every agent and every other process.

A request that does not fit waits at the server up to 20 s and asks again (keeping its place in
the queue); while the process holds or waits for slots, a thread renews them every few seconds
(``FLOWBUS_HEARTBEAT_SECONDS``), so a script killed while it holds them loses them after the
lease (``FLOWBUS_LEASE_SECONDS`` at the orchestrator). A server that cannot be reached (or
whose orchestrators are electing a leader) is asked again for up to 30 s, then it is an error of
the call (``ConcurrencySlotAcquisitionError``), never a silent pass; a server of a release
before this one (no ``/slots``) leaves the limits as they were then, said once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from types import SimpleNamespace
from typing import Any

from flowbus.engine.concurrency import NamedSlots, Release
from flowbus.engine.errors import ConcurrencySlotAcquisitionError
from flowbus.engine.settings import env_float
from flowbus.engine.slot_table import GLOBAL
from flowbus.remote.profiles import Api, active_api, tls_verify

#: How long the server holds an ask that does not fit before answering "not yet".
WAIT_AT_SERVER = 20.0
#: How long a tag set the server said has no limit is taken as such.
UNLIMITED_SECONDS = 1.0
log = logging.getLogger("flowbus.slots")


class _NoSlotService(Exception):
    """The server predates concurrency slots through its API (404)."""


class _Unreachable(ConcurrencySlotAcquisitionError):
    """The server, or an orchestrator behind it, does not answer just now."""


class HttpSlots:
    """A process's slots at one server; safe to use from any thread and loop."""

    def __init__(self, api: Api, patience: float = 30.0) -> None:
        self.api = api
        #: How long a server that cannot be reached (restarting, electing a leader) is waited
        #: for before the call fails.
        self.patience = patience
        #: Who the server's orchestrators count the slots of (``hand:<this>``).
        self.process = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        import httpx  # loaded when a profile is active: `import flowbus` stays light

        headers = {"Authorization": f"Bearer {api.token}"} if api.token else {}
        self._http = httpx.Client(base_url=f"{api.url}/api/v1", headers=headers,
                                  timeout=WAIT_AT_SERVER + 15, verify=tls_verify())  # fmt: skip
        self._lock = threading.Lock()
        #: Holder -> (flow run, keys, slots of each): held now (what a renewal reports).
        self._held: dict[str, tuple[str, list[str], int]] = {}
        #: Holders asking now (the process renews while they wait, reporting none of them).
        self._asking: set[str] = set()
        self._renewer: threading.Thread | None = None
        #: Tag sets the server said have no limit, and when (monotonic).
        self._unlimited: dict[frozenset[str], float] = {}
        self._warned = False

    # --- the provider ------------------------------------------------------------------------

    async def acquire(self, tags: list[str], holder: str, run_id: str) -> Release | None:
        # Most tagged task runs need no slot: a tag set the server said has no limit is taken
        # as such for a second (the orchestrators read limits as often), not asked each time.
        known = frozenset(tags)
        if time.monotonic() - self._unlimited.get(known, -UNLIMITED_SECONDS) < UNLIMITED_SECONDS:
            return None
        request = NamedSlots(list(tags), holder=holder, run_id=run_id)
        try:
            release = await self._take(list(tags), request, strict_check=False)
        except _NoSlotService:
            return None  # as before servers had slots: tags limit no run by hand
        if release is None:
            self._unlimited[known] = time.monotonic()
        return release

    async def acquire_named(self, names: list[str], request: NamedSlots) -> Release | None:
        try:
            return await self._take([GLOBAL + n for n in names], request, strict_check=True)
        except _NoSlotService:  # as before servers had slots: this process counts them
            from flowbus.engine.local_slots import local_slots

            return await local_slots().acquire_named(names, request)

    async def _take(
        self, keys: list[str], request: NamedSlots, strict_check: bool
    ) -> Release | None:
        with self._lock:
            self._asking.add(request.holder)
        self._keep_renewing()
        try:
            granted = await asyncio.to_thread(self._until_granted, keys, request, strict_check)
        except _NoSlotService:
            raise
        except BaseException:  # a timeout, a cancel: stop waiting (the server may be away)
            with contextlib.suppress(ConcurrencySlotAcquisitionError):
                await asyncio.to_thread(self._give_back, request.holder)
            raise
        finally:
            with self._lock:
                self._asking.discard(request.holder)
        if not granted or request.decay:  # nothing limited, or slots that drain by themselves
            return None
        with self._lock:
            self._held[request.holder] = (request.run_id, keys, request.occupy)

        async def release() -> None:
            await asyncio.to_thread(self._give_back, request.holder)

        return release

    def _until_granted(self, keys: list[str], request: NamedSlots, strict_check: bool) -> bool:
        """True once held; False when none of the keys has a limit."""
        deadline = request.deadline()
        first = True
        while True:
            wait = WAIT_AT_SERVER if deadline is None else max(0.0, deadline - time.monotonic())
            reply = self._ask_patiently({
                "holder": request.holder, "process": self.process, "run_id": request.run_id,
                "keys": keys, "occupy": request.occupy, "decay": request.decay,
                "wait": min(wait, WAIT_AT_SERVER)})  # fmt: skip
            if first and strict_check:
                request.check(SimpleNamespace(**reply))
            elif first and (reply.get("too_small") or reply.get("no_decay")):
                raise ConcurrencySlotAcquisitionError(f"slots of {keys} can never be granted")
            first = False
            if not reply["limited"]:
                return False
            if reply["granted"]:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                raise request.timed_out()

    def _ask_patiently(self, body: dict[str, Any]) -> dict[str, Any]:
        """An acquire, asked again while the server cannot be reached, up to ``patience``
        (asking again with the same holder is safe: it keeps its place)."""
        given_up = time.monotonic() + self.patience
        while True:
            try:
                return self._post("/slots/acquire", body)
            except _Unreachable:
                if time.monotonic() >= given_up:
                    raise
                time.sleep(1.0)

    def _give_back(self, holder: str) -> None:
        with self._lock:
            self._held.pop(holder, None)
        self._post("/slots/release", {"holder": holder})

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            answer = self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise _Unreachable(
                f"concurrency slots: {self.api.url} cannot be reached: {exc!r}"
            ) from exc
        if answer.status_code == 503:  # no orchestrator answers just now (an election)
            raise _Unreachable(f"concurrency slots: {self.api.url}: {answer.text[:300]}")
        if answer.status_code == 404 and path == "/slots/acquire":
            if not self._warned:
                self._warned = True
                log.warning("%s has no concurrency slots (an older flowbus): limits in runs by "
                            "hand are not shared with it", self.api.url)  # fmt: skip
            raise _NoSlotService(self.api.url)
        if answer.status_code >= 400:
            raise ConcurrencySlotAcquisitionError(
                f"concurrency slots: {self.api.url} answered {answer.status_code}: "
                f"{answer.text[:300]}"
            )
        found: dict[str, Any] = answer.json()
        return found

    # --- staying alive -----------------------------------------------------------------------

    def _keep_renewing(self) -> None:
        with self._lock:
            if self._renewer is not None and self._renewer.is_alive():
                return
            self._renewer = threading.Thread(target=self._renew, name="flowbus-slots",
                                             daemon=True)  # fmt: skip
            self._renewer.start()

    def _renew(self) -> None:
        every = env_float("FLOWBUS_HEARTBEAT_SECONDS", 5.0)
        while True:
            time.sleep(every)
            with self._lock:
                held = [{"holder": h, "run_id": run, "tags": keys, "occupy": occupy}
                        for h, (run, keys, occupy) in self._held.items()]  # fmt: skip
                if not held and not self._asking:
                    self._renewer = None
                    return
            # The server away: renewed next time; the lease decides.
            with contextlib.suppress(ConcurrencySlotAcquisitionError):
                self._post("/slots/renew", {"process": self.process, "holdings": held})


#: One provider per server, for the process.
_by_server: dict[str, HttpSlots] = {}


def remote_slots() -> HttpSlots | None:
    """The active profile's server's slots, or None without a server."""
    api = active_api()
    if api is None:
        return None
    found = _by_server.get(api.url)
    if found is None:
        found = _by_server[api.url] = HttpSlots(api)
    return found


__all__ = ["HttpSlots", "remote_slots"]
