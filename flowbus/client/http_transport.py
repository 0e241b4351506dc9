"""The client's requests over a server's HTTP API (a profile, or ``FLOWBUS_API_URL``), for
machines that reach the team's server but not its NATS or store. What the API does not offer
(runs for later, queue settings other than pause) raises ``ClientError`` "not_over_http".

Every refusal keeps its code: the API answers ``{"error": {"code", "message", "details"}}``
and this raises ``ClientError`` with them, as the NATS transport does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from flowbus.broker import protocol as p
from flowbus.client.model import ClientError, FinalState, SubmittedRun
from flowbus.engine.events import Event, decode_event
from flowbus.engine.results import ResultMissing, read_output
from flowbus.engine.states import StateType
from flowbus.remote.profiles import Api, tls_verify

#: How often ``wait`` reads a run that has not ended yet (seconds, growing to the second).
POLL_FIRST, POLL_MAX = 0.1, 1.0
#: A run ending Crashed may be queued again at once: this long without another state means
#: Crashed was its last (as the NATS client waits).
CRASH_SETTLE_SECONDS = 1.0


def deployment_path(deployment: str) -> str:
    flow, _, name = deployment.partition("/")
    return f"{quote(flow, safe='')}/{quote(name, safe='')}"


class HttpTransport:
    """The client's requests, made to a server's ``/api/v1``."""

    def __init__(self, api: Api, timeout: float) -> None:
        self.api = api
        self.timeout = timeout
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        """Made on first use: requests may start at once after ``connect``."""
        if self._http is None:
            headers = {"Authorization": f"Bearer {self.api.token}"} if self.api.token else {}
            self._http = httpx.AsyncClient(base_url=f"{self.api.url}/api/v1", headers=headers,
                                           timeout=self.timeout, verify=tls_verify())  # fmt: skip
        return self._http

    async def connect(self) -> None:
        self.http  # noqa: B018 - made now

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def nats(self) -> Any:
        raise ClientError("not_over_http", f"this client goes through {self.api.url}, not NATS")

    async def request(self, method: str, path: str, **options: Any) -> Any:
        try:
            response = await self.http.request(method, path, **options)
        except httpx.TimeoutException as exc:
            raise ClientError("timeout", f"{self.api.url} did not answer {path}") from exc
        except httpx.HTTPError as exc:
            raise ClientError("unavailable", f"cannot reach {self.api.url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": response.text[:500]}
            code = "unauthorized" if response.status_code == 401 else error.get("code")
            raise ClientError(code or "http_error", error.get("message") or response.reason_phrase,
                              error.get("details"))  # fmt: skip
        return response.json()

    # --- runs --------------------------------------------------------------------------------

    async def submit(self, request: p.SubmitRequest) -> SubmittedRun:
        if request.scheduled_time is not None or request.schedule_id is not None:
            raise ClientError("not_over_http", "runs for later are submitted over NATS only")
        body = {"parameters": request.parameters, "idempotency_key": request.idempotency_key,
                "tags": request.tags}  # fmt: skip
        data = await self.request("POST", f"/deployments/{deployment_path(request.deployment)}"
                                  "/runs", json=body)  # fmt: skip
        return SubmittedRun(data["run_id"], data["name"], data["queue"], data["created"])

    async def _run_action(self, run_id: str, action: str, body: Any = None) -> str:
        data = await self.request("POST", f"/runs/{run_id}/{action}", json=body)
        return str(data["state"])

    async def cancel(self, run_id: str) -> str:
        return await self._run_action(run_id, "cancel")

    async def resume(self, run_id: str, input: dict[str, Any] | None) -> str:
        return await self._run_action(run_id, "resume", {"input": input})

    async def retry(self, run_id: str) -> str:
        return await self._run_action(run_id, "retry")

    async def _run(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.request("GET", f"/runs/{run_id}")
        return found

    async def wait(self, run_id: str) -> FinalState:
        """The run once it is in a final state it will not be queued again from (read from
        the server's store, so a read right after agrees)."""
        pause = POLL_FIRST
        crashed_since: float | None = None
        while True:
            run = await self._run(run_id)
            kind = StateType(run["state_type"])
            crashed = kind is StateType.CRASHED
            # A run ending Crashed may be queued again at once: Crashed for a while is final.
            crashed_since = (crashed_since or time.monotonic()) if crashed else None
            settled = crashed and time.monotonic() - (crashed_since or 0) >= CRASH_SETTLE_SECONDS
            if (kind.is_terminal and not crashed) or settled:
                return FinalState(run_id, kind, run["state_name"], run["state_message"],
                                  run["result_summary"])  # fmt: skip
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX)

    async def result(self, run_id: str) -> Any:
        found = await self.request("GET", f"/runs/{run_id}/result")
        if found["result_ref"] is None:
            return found["result"]
        try:
            return await asyncio.to_thread(read_output, found["result_ref"])
        except ResultMissing as exc:
            raise ClientError("result_unavailable", str(exc)) from exc

    async def events(
        self, run_id: str | None, types: list[str] | None, since: datetime | None
    ) -> AsyncGenerator[Event, None]:
        """Events as they happen, from the API's server-sent events (``/events/stream``)."""
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("types", t) for t in types or []
        ]
        if run_id is not None:
            params.append(("run_id", run_id))
        if since is not None:
            params.append(("since", since.isoformat()))
        timeout = httpx.Timeout(self.http.timeout.connect, read=None)  # a stream may be quiet
        async with self.http.stream("GET", "/events/stream", params=params,
                                    timeout=timeout) as response:  # fmt: skip
            if response.status_code >= 400:
                await response.aread()
                raise ClientError("http_error", f"events stream: {response.status_code}")
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    try:
                        yield decode_event(line[6:])
                    except ValueError:
                        continue  # not an event this version knows: skipped, as over NATS

    # --- queues, agents, deployments, limits, custom events ----------------------------------

    async def queues(self) -> list[p.QueueInfo]:
        return [p.QueueInfo.model_validate(q) for q in await self.request("GET", "/queues")]

    async def update_queue(self, update: p.QueueUpdate) -> p.QueueInfo:
        changes = update.model_dump(exclude={"name"}, exclude_none=True)
        if set(changes) != {"paused"}:
            raise ClientError("not_over_http", "over HTTP a queue can be paused or resumed only")
        action = "pause" if update.paused else "resume"
        data = await self.request("POST", f"/queues/{quote(update.name, safe='')}/{action}")
        return p.QueueInfo.model_validate({k: v for k, v in data.items() if k != "ok"})

    async def agents(self) -> list[p.AgentInfo]:
        return [p.AgentInfo.model_validate(a) for a in await self.request("GET", "/agents")]

    async def deployments(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.request("GET", "/deployments")
        return found

    async def limits(self) -> list[p.LimitInfo]:
        return [p.LimitInfo.model_validate(limit) for limit in await self.request("GET", "/limits")]

    async def emit(self, event: p.CustomEvent) -> p.CustomEvent:
        """A custom event published by the server (``POST /custom-events``)."""
        body = event.model_dump(mode="json", exclude={"occurred"})
        return p.CustomEvent.model_validate(await self.request("POST", "/custom-events", json=body))

    async def automations_changed(self) -> bool:
        return False  # the server's own orchestrators read automations again


__all__ = ["HttpTransport", "deployment_path"]
