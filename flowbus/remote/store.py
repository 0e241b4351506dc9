"""The store's reads over a server's HTTP API: what the CLI's reading commands use when a
profile or ``FLOWBUS_API_URL`` names a server (``runs ls``, ``runs show``, ``runs logs``,
``runs result``, ``deployments ls``...), so they need no store file.

It answers the read methods of ``EventStore`` the CLI calls, with the same view objects, and
the writes the CLI makes: a deployment, documents (variables, limits, automations, block
types) and blocks (whose secrets the server encrypts); what the API does not serve raises
``FlowbusError`` saying so.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from flowbus.client.http_transport import HttpTransport, deployment_path
from flowbus.engine.errors import FlowbusError
from flowbus.engine.event_types import EventType

if TYPE_CHECKING:
    from flowbus.engine.store import EventStore
from flowbus.engine.store.views import (
    AuditView,
    DeploymentView,
    DocumentView,
    FlowRunView,
    LogLine,
    StoredEvent,
    TaskRunView,
)
from flowbus.remote.profiles import Api

#: The largest page the API serves.
PAGE = 500


def _view(kind: type[Any], data: dict[str, Any]) -> Any:
    """A view from the API's JSON of it (``result_summary`` is the views' ``result``)."""
    names = {f.name for f in dataclasses.fields(kind)}
    values = {key: value for key, value in data.items() if key in names}
    if "result" in names:
        values["result"] = data.get("result_summary")
    return kind(**values)


class ApiStore:
    """A store over ``/api/v1``; open and close as a store."""

    def __init__(self, api: Api, timeout: float = 30.0) -> None:
        self.api = api
        self.http = HttpTransport(api, timeout)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        await self.http.close()

    async def _get(self, path: str, **params: Any) -> Any:
        query = {key: value for key, value in params.items() if value is not None}
        return await self.http.request("GET", path, params=query)

    async def get_flow_run(self, run_id: str) -> FlowRunView | None:
        from flowbus.client import ClientError

        try:
            return _view(FlowRunView, await self._get(f"/runs/{run_id}"))
        except ClientError as exc:
            if exc.code == "not_found":
                return None
            raise

    async def find_flow_runs(self, prefix: str, limit: int = 2) -> list[FlowRunView]:
        page = await self._get("/runs", id_prefix=prefix, limit=limit)
        return [_view(FlowRunView, run) for run in page["runs"]]

    async def list_flow_runs(
        self,
        state: str | None = None,
        flow_name: str | None = None,
        limit: int = 50,
        parent_run_id: str | None = None,
        **filters: Any,
    ) -> list[FlowRunView]:
        runs: list[FlowRunView] = []
        cursor = None
        while len(runs) < limit:
            page = await self._get(
                "/runs", state=state, flow=flow_name, parent=parent_run_id,
                deployment=filters.get("deployment"), tag=filters.get("tag"),
                limit=min(limit - len(runs), PAGE), cursor=cursor,
            )  # fmt: skip
            runs += [_view(FlowRunView, run) for run in page["runs"]]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return runs

    async def read_stream(self, stream_id: str, after_seq: int = 0) -> list[StoredEvent]:
        events = await self._get(f"/runs/{stream_id}/events", after=after_seq)
        return [StoredEvent(**event) for event in events]

    async def list_task_runs(self, run_id: str) -> list[TaskRunView]:
        return [_view(TaskRunView, t) for t in await self._get(f"/runs/{run_id}/task-runs")]

    async def get_logs(self, run_id: str, after_seq: int = 0, limit: int = 1000) -> list[LogLine]:
        page = await self._get(f"/runs/{run_id}/logs", after=after_seq, limit=min(limit, 1000))
        return [_view(LogLine, line) for line in page["logs"]]

    async def list_deployments(self) -> list[DeploymentView]:
        return [_view(DeploymentView, d) for d in await self._get("/deployments")]

    async def get_deployment(self, name: str) -> DeploymentView | None:
        from flowbus.client import ClientError

        try:
            return _view(DeploymentView, await self._get(f"/deployments/{deployment_path(name)}"))
        except ClientError as exc:
            if exc.code == "not_found":
                return None
            raise

    async def run_activity(self, hours: int, failures: int = 10) -> dict[str, Any]:
        """``flowbus.stats.run_activity``, as the server counts it."""
        result: dict[str, Any] = await self._get("/stats/runs", hours=hours, failures=failures)
        return result

    async def get_document(self, kind: str, name: str) -> DocumentView | None:
        from flowbus.client import ClientError

        try:
            return _view(DocumentView, await self._get(_document_path(kind, name)))
        except ClientError as exc:
            if exc.code == "not_found":
                return None
            raise

    async def list_audit(
        self,
        actor: str | None = None,
        since: str | None = None,
        limit: int = 100,
        subject: str | None = None,
    ) -> list[AuditView]:
        params = {"actor": actor, "after": since, "limit": limit, "subject": subject}
        return [AuditView(**row) for row in await self._get("/audit", **params)]

    async def list_documents(self, kind: str) -> list[DocumentView]:
        return [_view(DocumentView, d) for d in await self._get(f"/documents/{quote(kind)}")]

    async def save_block(self, type_name: str, name: str, data: dict[str, Any]) -> DocumentView:
        """A block saved from its plain fields: the server checks them against its type and
        encrypts the secret fields with its own key."""
        path = f"/blocks/{quote(type_name)}/{quote(name)}"
        view: DocumentView = _view(DocumentView, await self.http.request("PUT", path, json=data))
        return view

    async def append_next(
        self, stream_id: str, type_: str, fields: dict[str, Any], attempts: int = 5
    ) -> None:
        """The writes the CLI makes, recorded by the server as their next version: a
        deployment (``flowbus deploy``), a document saved or deleted."""
        if type_ == EventType.DEPLOYMENT_SAVED:
            await self.http.request("POST", "/deployments", json=fields)
        elif type_ == EventType.DOCUMENT_SAVED:
            path = _document_path(fields["kind"], fields["name"])
            await self.http.request("PUT", path, json={"body": fields["body"]})
        elif type_ == EventType.DOCUMENT_DELETED:
            await self.http.request("DELETE", _document_path(fields["kind"], fields["name"]))
        else:
            raise FlowbusError(f"{type_} events cannot be recorded through {self.api.url}")

    def __getattr__(self, name: str) -> Any:
        raise FlowbusError(
            f"this command needs the store ({name}), which {self.api.url} does not serve over "
            "its HTTP API yet: run it where the store is, or without a profile"
        )


def configured_store() -> EventStore:
    """The store a command or a script on this machine writes to: through the server of the
    active profile (``flowbus login``, ``$FLOWBUS_API_URL``), else the configured one."""
    from flowbus.engine.store import store_from_url
    from flowbus.remote.profiles import active_api

    api = active_api()
    return cast("EventStore", ApiStore(api)) if api is not None else store_from_url()


def _document_path(kind: str, name: str) -> str:
    return f"/documents/{quote(kind)}/{quote(name, safe='/')}"
