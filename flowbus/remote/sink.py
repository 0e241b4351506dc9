"""Runs by hand on a machine with a profile report to the team's server.

``python my_flow.py`` on a laptop where ``flowbus login`` saved a profile (or
``FLOWBUS_API_URL`` is set) sends its run's events to the server (``POST /api/v1/events``),
which records them in its store and publishes them to its subscribers: the run shows in the
team's UI. Without a profile, runs record to the local SQLite store as always.

Durability: events go in batches while the run goes on; when the flow returns, its events are
in the server's store (the engine's final flush waits for the server's answer). When the server
cannot be reached, the run is not held up for ever: after ``FLOWBUS_API_FLUSH_SECONDS`` (30) its
events not yet accepted are written to a spool file in ``$FLOWBUS_HOME/outbox/<server>/``,
and the next run by hand that reaches that server sends them first: nothing is lost, the run
shows up late. The server takes each event once (by its id), so sending again is
safe.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import orjson

from flowbus.engine import settings
from flowbus.engine.errors import FlowbusError
from flowbus.engine.loops import store_loop
from flowbus.engine.pump import Pump
from flowbus.engine.records import EventRecord
from flowbus.remote.profiles import Api, tls_verify

log = logging.getLogger("flowbus.engine")
#: Events per request (the server takes up to 1,000).
BATCH = 500


class ServerUnreachable(FlowbusError):
    """The server did not take a batch of events (it is down, or refused them)."""


def outbox(api: Api) -> Path:
    """Where events for ``api``'s server wait when it cannot be reached (one folder each)."""
    server = re.sub(r"[^A-Za-z0-9.-]", "_", urlparse(api.url).netloc)
    return settings.home() / "outbox" / server


def flush_patience() -> float:
    return float(os.environ.get("FLOWBUS_API_FLUSH_SECONDS") or 30)


class HttpEventSink:
    """Sends events to a server's ``/api/v1/events`` in batches, on the store loop."""

    def __init__(self, api: Api) -> None:
        self.api = api
        headers = {"Authorization": f"Bearer {api.token}"} if api.token else {}
        self._client = httpx.AsyncClient(base_url=f"{api.url}/api/v1", headers=headers,
                                         timeout=10, verify=tls_verify())  # fmt: skip
        self._pump = Pump(self._post, store_loop.loop)
        self._pump.error_type = ServerUnreachable
        self._pump.done_as = f"sent to {api.url}"
        self._pump.retry_after = 0.5
        store_loop.call(self._ship_spooled())

    async def _post(self, batch: list[EventRecord]) -> None:
        for start in range(0, len(batch), BATCH):
            await self._send([record.data for record in batch[start : start + BATCH]])

    async def _send(self, events: list[dict[str, Any]]) -> None:
        body = orjson.dumps({"events": events})
        headers = {"Content-Type": "application/json"}
        try:
            answer = await self._client.post("/events", content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"{self.api.url}: {exc!r}") from exc
        if answer.status_code >= 400:
            raise ServerUnreachable(f"{self.api.url} answered {answer.status_code}: "
                                    f"{answer.text[:300]}")  # fmt: skip

    def emit(self, record: EventRecord) -> None:
        self._pump.submit(record)

    def flush(self, timeout: float | None = None) -> None:
        """Until the server has every event so far; past the patience, spool the rest."""
        try:
            self._pump.flush(min(timeout, flush_patience()) if timeout else flush_patience())
        except ServerUnreachable as exc:
            kept = store_loop.call(self._spool())
            log.warning("%s; %d events kept in %s, sent with the next run that reaches it",
                        exc, kept, outbox(self.api))  # fmt: skip

    async def _spool(self) -> int:
        """Write what the pump holds to a spool file (on the pump's loop, once no delivery is
        under way and none will start); the pump stays usable for later events."""
        retry, self._pump.retry_after = self._pump.retry_after, None
        # A delivery in flight ends within its timeout; the pump signals nothing for it, and
        # this runs once, when the server is already found out of reach.
        while self._pump.draining:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        records = self._pump.take_backlog()
        self._pump.retry_after = retry
        if records:
            await asyncio.to_thread(write_spool, outbox(self.api), records)
        return len(records)

    async def _ship_spooled(self) -> int:
        """Send the events runs spooled earlier, oldest first; a file goes once it is taken."""
        return await ship_spool(outbox(self.api), self._send)

    def close(self) -> None:
        self.flush()
        store_loop.call(self._client.aclose())


def write_spool(folder: Path, records: list[EventRecord]) -> Path:
    """One spool file with ``records`` (written whole, synced, then renamed into place)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}.jsonl"
    staging = target.with_suffix(".partial")
    with staging.open("wb") as out:
        for record in records:
            out.write(orjson.dumps(record.data) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    staging.replace(target)
    return target


def read_spool(folder: Path) -> list[tuple[Path, list[dict[str, Any]]]]:
    """The spool files in ``folder``, oldest first, with their events."""
    if not folder.exists():
        return []
    return [
        (path, [orjson.loads(line) for line in path.read_bytes().splitlines() if line])
        for path in sorted(folder.glob("*.jsonl"))
    ]


async def ship_spool(folder: Path, send: Any) -> int:
    """Send every spool file in ``folder`` with ``send``, oldest first; stop at the first that
    fails."""
    sent = 0
    for path, events in await asyncio.to_thread(read_spool, folder):
        try:
            for start in range(0, len(events), BATCH):
                await send(events[start : start + BATCH])
        except ServerUnreachable as exc:
            log.warning("spooled events not sent yet: %s", exc)
            return sent
        await asyncio.to_thread(path.unlink)
        sent += len(events)
    return sent
