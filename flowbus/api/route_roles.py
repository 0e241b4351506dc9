"""Which role each route of the API needs: one table, and one dependency every router carries.

Reading (``GET``) needs ``viewer``, ``/metrics`` any role (``metrics`` included); everything that
changes something is listed below with the role it needs; a route missing from the list needs
``admin`` (a new route is closed until someone decides). ``tests/integration/test_api_roles.py``
walks every route of the OpenAPI document and checks the roles it admits.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request

from flowbus.engine.api_tokens import METRICS, admits

V1 = "/api/v1"
_CONVERTER = re.compile(r"\{(\w+):\w+\}")

#: The role each state-changing route needs, by (method, path as declared).
CHANGES: dict[tuple[str, str], str] = {
    # operator: runs and queues
    ("POST", f"{V1}/deployments/{{flow_name}}/{{name}}/runs"): "operator",
    ("POST", f"{V1}/runs/{{run_id}}/cancel"): "operator",
    ("POST", f"{V1}/runs/{{run_id}}/resume"): "operator",
    ("POST", f"{V1}/runs/{{run_id}}/retry"): "operator",
    ("POST", f"{V1}/queues/{{name}}/pause"): "operator",
    ("POST", f"{V1}/queues/{{name}}/resume"): "operator",
    # the events of a run by hand, and custom events: what running flows publishes
    ("POST", f"{V1}/events"): "operator",
    ("POST", f"{V1}/custom-events"): "operator",
    # concurrency slots a run by hand takes (flowbus/api/slots.py)
    ("POST", f"{V1}/slots/acquire"): "operator",
    ("POST", f"{V1}/slots/release"): "operator",
    ("POST", f"{V1}/slots/renew"): "operator",
    # a schedule paused or resumed is operations, as a queue's (defining one is a deploy)
    ("POST", f"{V1}/deployments/{{flow_name}}/{{name}}/schedules/{{schedule_id}}/pause"): (
        "operator"
    ),
    ("POST", f"{V1}/deployments/{{flow_name}}/{{name}}/schedules/{{schedule_id}}/resume"): (
        "operator"
    ),
    # developer: what runs, and with what
    ("POST", f"{V1}/deployments"): "developer",
    ("PUT", f"{V1}/blocks/{{type_name}}/{{name}}"): "developer",
    ("PUT", f"{V1}/documents/{{kind}}/{{name}}"): "developer",
    ("DELETE", f"{V1}/documents/{{kind}}/{{name}}"): "developer",
    # admin: tokens
    ("POST", f"{V1}/tokens"): "admin",
    ("DELETE", f"{V1}/tokens/{{name}}"): "admin",
}
#: Reads that need more than ``viewer``.
READS: dict[str, str] = {
    f"{V1}/tokens": "admin",
    "/metrics": METRICS,
}


def role_for(method: str, path: str) -> str:
    """The role a request to the route declared as ``path`` needs (``{name:path}`` is
    ``{name}``, as the OpenAPI document writes it)."""
    path = _CONVERTER.sub(r"{\1}", path)
    if method in ("GET", "HEAD"):
        return READS.get(path, "viewer")
    return CHANGES.get((method, path), "admin")


def require_role(prefix: str) -> Callable[[Request], Awaitable[None]]:
    """The dependency of every router included under ``prefix``: refuse (403) a caller whose
    role is short of the route's. Who the caller is was settled before (``login.add_guard``);
    without tokens the API is open and everyone is ``admin``."""

    async def check(request: Request) -> None:
        route = request.scope.get("route")
        path = prefix + getattr(route, "path", "")
        needed = role_for(request.method, path)
        identity = getattr(request.state, "identity", None)
        held = identity.role if identity is not None else "admin"
        if not admits(held, needed):
            raise HTTPException(
                403,
                detail={"code": "forbidden", "needed": needed, "role": held,
                        "message": f"this needs the {needed} role; the token is {held}"},
            )  # fmt: skip

    return check


__all__ = ["CHANGES", "READS", "require_role", "role_for"]
