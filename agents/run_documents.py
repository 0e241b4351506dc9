"""A run's blocks, variables and artifacts through the orchestrator (the agent's side).

The agent sets this as the run's ``run_documents_var``: ``Secret.load(...)``, ``variables.get``
and ``Artifact.get`` in the flow ask the orchestrator on ``flowbus.agent.documents``, signed
with the run's attempt key (``broker/run_documents.py``). The agent needs no store URL and no
secret key. Callable from any thread: each request hops to the NATS client's loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from flowbus.broker import protocol as p
from flowbus.broker import subjects, versions
from flowbus.broker.protocol import ClaimGrant
from flowbus.broker.run_documents import Action, DocumentReply, DocumentRequest, signed
from flowbus.engine.errors import FlowbusError

#: How long a request waits for an orchestrator (one may be restarting) before it fails.
ANSWER_SECONDS = 30.0


class DocumentRefused(FlowbusError, PermissionError):
    """The orchestrator would not hand it over: the run is not held by this attempt, the
    deployment may not load that block, or the request was not signed by its holder."""


class NatsDocuments:
    """``RunDocuments`` of one claimed run, asked of the orchestrator over ``client``."""

    def __init__(self, client: Client, loop: asyncio.AbstractEventLoop, grant: ClaimGrant) -> None:
        self.client = client
        self.loop = loop
        self.run_id = grant.run_id
        self.attempt = grant.attempt
        self._key = bytes.fromhex(grant.attempt_key) if grant.attempt_key else b""

    async def block(self, key: str) -> dict[str, Any] | None:
        reply = await self._ask("block", key)
        return reply.value if reply.found else None

    async def variable(self, name: str) -> tuple[bool, Any]:
        reply = await self._ask("variable", name)
        return reply.found, reply.value

    async def set_variable(self, name: str, value: Any, tags: list[str] | None = None) -> None:
        await self._ask("set_variable", name, value, tags)

    async def unset_variable(self, name: str) -> bool:
        return (await self._ask("unset_variable", name)).found

    async def artifact(self, key: str) -> dict[str, Any] | None:
        reply = await self._ask("artifact", key)
        return reply.value if reply.found else None

    async def _ask(
        self, action: Action, name: str, value: Any = None, tags: list[str] | None = None
    ) -> DocumentReply:
        request = DocumentRequest(run_id=self.run_id, attempt=self.attempt, action=action,
                                  name=name, value=value, tags=tags)  # fmt: skip
        body = signed(request, self._key).dump()
        if asyncio.get_running_loop() is self.loop:
            return await self._request(body)
        hop = asyncio.run_coroutine_threadsafe(self._request(body), self.loop)
        return await asyncio.wrap_future(hop)

    async def _request(self, body: bytes) -> DocumentReply:
        deadline = time.monotonic() + ANSWER_SECONDS
        while True:
            try:
                answer = await self.client.request(
                    subjects.DOCUMENTS, body, timeout=5, headers=versions.with_version()
                )
                break
            except (NoRespondersError, NatsTimeoutError):
                if time.monotonic() >= deadline:
                    raise FlowbusError(
                        f"no orchestrator answered {subjects.DOCUMENTS} within "
                        f"{ANSWER_SECONDS:.0f} s"
                    ) from None
                await asyncio.sleep(0.5)  # no orchestrator just now: one comes back
        reply = p.decode_reply(DocumentReply, answer.data)
        if isinstance(reply, p.ErrorReply):
            if reply.error.code == "refused":
                raise DocumentRefused(reply.error.message)
            raise FlowbusError(f"the orchestrator could not answer: {reply.error.message}")
        return reply


__all__ = ["ANSWER_SECONDS", "DocumentRefused", "NatsDocuments"]
