"""``flowbus.Client`` over a server's HTTP API (a profile, or ``FLOWBUS_API_URL``), for
machines that reach the team's server but not its NATS or store.

Every refusal keeps its code: the API answers ``{"error": {"code", "message", "details"}}``
and this raises ``ClientError`` with them, as the NATS client does.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from flowbus.broker import protocol as p
from flowbus.client import Client, ClientError, FinalState, SubmittedRun
from flowbus.engine.events import Event, decode_event
from flowbus.engine.results import ResultMissing, ResultStorage
from flowbus.engine.states import StateType
from flowbus.profiles import Api

#: How often ``wait`` reads a run that has not ended yet (seconds, growing to the second).
POLL_FIRST, POLL_MAX = 0.1, 1.0
#: A run ending Crashed may be queued again at once: this long without another state means
#: Crashed was its last (as the NATS client waits).
CRASH_SETTLE_SECONDS = 1.0


def tls_verify() -> str | bool:
    """How an HTTPS server is verified: ``$FLOWBUS_API_TLS_CA``, else the system's CAs."""
    return os.environ.get("FLOWBUS_API_TLS_CA") or True


def deployment_path(deployment: str) -> str:
    flow, _, name = deployment.partition("/")
    return f"{quote(flow, safe='')}/{quote(name, safe='')}"


class HttpTransport:
    """The requests of ``flowbus.Client``, made to ``/api/v1``."""

    def __init__(self, api: Api, timeout: float) -> None:
        self.api = api
        headers = {"Authorization": f"Bearer {api.token}"} if api.token else {}
        self.http = httpx.AsyncClient(base_url=f"{api.url}/api/v1", headers=headers,
                                      timeout=timeout, verify=tls_verify())  # fmt: skip

    async def close(self) -> None:
        await self.http.aclose()

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

    async def submit(
        self, deployment: str, parameters: dict[str, Any], key: str | None, tags: list[str]
    ) -> SubmittedRun:
        body = {"parameters": parameters, "idempotency_key": key, "tags": tags}
        data = await self.request("POST", f"/deployments/{deployment_path(deployment)}/runs",
                                  json=body)  # fmt: skip
        return SubmittedRun(data["run_id"], data["name"], data["queue"], data["created"])

    async def run_action(self, run_id: str, action: str, body: Any = None) -> str:
        data = await self.request("POST", f"/runs/{run_id}/{action}", json=body)
        return str(data["state"])

    async def run(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.request("GET", f"/runs/{run_id}")
        return found

    async def wait(self, run_id: str) -> dict[str, Any]:
        """The run once it is in a final state it will not be queued again from (read from
        the server's store, so a read right after agrees)."""
        pause = POLL_FIRST
        crashed_since: float | None = None
        while True:
            run = await self.run(run_id)
            kind = StateType(run["state_type"])
            if kind.is_terminal and kind is not StateType.CRASHED:
                return run
            if kind is StateType.CRASHED:
                crashed_since = crashed_since or time.monotonic()
                if time.monotonic() - crashed_since >= CRASH_SETTLE_SECONDS:
                    return run
            else:
                crashed_since = None
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX)

    async def result(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.request("GET", f"/runs/{run_id}/result")
        return found

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

    # --- queues, agents, deployments -----------------------------------------------------

    async def queues(self) -> list[p.QueueInfo]:
        return [p.QueueInfo.model_validate(q) for q in await self.request("GET", "/queues")]

    async def pause_queue(self, name: str, paused: bool) -> p.QueueInfo:
        action = "pause" if paused else "resume"
        data = await self.request("POST", f"/queues/{quote(name, safe='')}/{action}")
        return p.QueueInfo.model_validate({k: v for k, v in data.items() if k != "ok"})

    async def agents(self) -> list[p.AgentInfo]:
        return [p.AgentInfo.model_validate(a) for a in await self.request("GET", "/agents")]

    async def deployments(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.request("GET", "/deployments")
        return found

    async def limits(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.request("GET", "/limits")
        return found

    async def emit(self, body: dict[str, Any]) -> dict[str, Any]:
        published: dict[str, Any] = await self.request("POST", "/custom-events", json=body)
        return published


class HttpClient(Client):
    """``flowbus.Client(api_url=...)``: the client's methods over the HTTP API. What the API
    does not offer (queue settings other than pause) raises ``ClientError`` "not_over_http"."""

    def __init__(
        self,
        nats_url: str | None = None,
        timeout: float = 10.0,
        api_url: str | None = None,
        api_token: str | None = None,
    ) -> None:
        super().__init__(nats_url, timeout)
        assert api_url is not None
        self.api = Api(api_url.rstrip("/"), api_token)
        self.http: HttpTransport | None = None

    @property
    def transport(self) -> HttpTransport:
        if self.http is None:
            self.http = HttpTransport(self.api, self.timeout)
        return self.http

    async def connect(self) -> None:
        self.transport  # noqa: B018 - made now: requests may start at once

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None

    @property
    def nats(self) -> Any:
        raise ClientError("not_over_http", f"this client goes through {self.api.url}, not NATS")

    async def submit(
        self,
        deployment: str,
        parameters: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        tags: Sequence[str] = (),
        scheduled_time: datetime | None = None,
        schedule_id: int | None = None,
    ) -> SubmittedRun:
        if scheduled_time is not None or schedule_id is not None:
            raise ClientError("not_over_http", "runs for later are submitted over NATS only")
        return await self.transport.submit(deployment, parameters or {}, idempotency_key,
                                           list(tags))  # fmt: skip

    async def cancel(self, run_id: str) -> str:
        return await self.transport.run_action(run_id, "cancel")

    async def resume(self, run_id: str, input: dict[str, Any] | None = None) -> str:
        return await self.transport.run_action(run_id, "resume", {"input": input})

    async def retry(self, run_id: str) -> str:
        return await self.transport.run_action(run_id, "retry")

    async def wait(self, run_id: str, timeout: float | None = None) -> FinalState:  # noqa: ASYNC109
        run = await asyncio.wait_for(self.transport.wait(run_id), timeout)
        return FinalState(run_id, StateType(run["state_type"]), run["state_name"],
                          run["state_message"], run["result_summary"])  # fmt: skip

    async def result(self, run_id: str) -> Any:
        found = await self.transport.result(run_id)
        if found["result_ref"] is None:
            return found["result"]
        try:
            return await asyncio.to_thread(ResultStorage.read, found["result_ref"])
        except ResultMissing as exc:
            raise ClientError("result_unavailable", str(exc)) from exc

    async def events(
        self,
        run_id: str | None = None,
        types: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> AsyncGenerator[Event, None]:
        async for event in self.transport.events(run_id, list(types or []), since):
            yield event

    async def queues(self) -> list[p.QueueInfo]:
        return await self.transport.queues()

    async def update_queue(self, name: str, **changes: Any) -> p.QueueInfo:
        if set(changes) != {"paused"}:
            raise ClientError("not_over_http", "over HTTP a queue can be paused or resumed only")
        return await self.transport.pause_queue(name, bool(changes["paused"]))

    async def agents(self) -> list[p.AgentInfo]:
        return await self.transport.agents()

    async def deployments(self) -> list[dict[str, Any]]:
        return await self.transport.deployments()

    async def limits(self) -> list[p.LimitInfo]:
        return [p.LimitInfo.model_validate(limit) for limit in await self.transport.limits()]

    async def _publish_custom(self, event: p.CustomEvent) -> p.CustomEvent:
        """A custom event published by the server (``POST /custom-events``)."""
        body = event.model_dump(mode="json", exclude={"occurred"})
        return p.CustomEvent.model_validate(await self.transport.emit(body))

    async def automations_changed(self) -> bool:
        return False  # the server's own orchestrators read automations again
