"""Answers ``flowbus.agent.documents``: a run on an agent reads its blocks (decrypted here),
variables and artifacts, and sets variables, through the orchestrator, which alone holds the
store and the secret key. Only the holder of the run's open attempt is answered
(``decisions.documents``); each block handed out is recorded as a ``block.read`` event."""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from flowbus.agents.decisions.documents import document_refusal
from flowbus.agents.ledger import RunLedger
from flowbus.agents.orchestrator.deployments import Deployments
from flowbus.broker import protocol as p
from flowbus.broker.fencing import MAC_HEADER, FenceChecker
from flowbus.broker.run_documents import DocumentReply, DocumentRequest
from flowbus.engine import variables
from flowbus.engine.artifacts import latest
from flowbus.engine.blocks import BLOCK, decrypted
from flowbus.engine.errors import UsageError
from flowbus.engine.event_types import EventType
from flowbus.engine.records import make_record
from flowbus.engine.store import EventStore

log = structlog.get_logger("flowbus.orchestrator")


class RunDocuments:
    """Serves a held run's reads and writes of blocks, variables and artifacts."""

    def __init__(
        self, store: EventStore, ledger: RunLedger, deployments: Deployments, fences: FenceChecker
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.deployments = deployments
        self.fences = fences

    async def serve(self, request: DocumentRequest) -> DocumentReply | p.ErrorReply:
        async with self.ledger.locks.hold(request.run_id):
            entry = await self.ledger.get(request.run_id)
        mac = self.fences.problem(request.run_id, request.attempt, request.signed_bytes(),
                                  {MAC_HEADER: request.mac})  # fmt: skip
        allowed = await self.deployments.blocks_of(entry.deployment) if entry else []
        refusal = document_refusal(entry, request, mac, allowed)
        if refusal:
            log.warning("refused a run's document request", run_id=request.run_id,
                        action=request.action, name=request.name, reason=refusal)  # fmt: skip
            return p.error("refused", refusal)
        assert entry is not None
        try:
            return await self._answer(request, entry.deployment, entry.agent)
        except UsageError as exc:  # a bad variable name, say
            return p.error("bad_request", str(exc))

    async def _answer(
        self, request: DocumentRequest, deployment: str, agent: str | None
    ) -> DocumentReply:
        name = request.name
        if request.action == "block":
            found = await self.store.get_document(BLOCK, name)
            if found is None:
                return DocumentReply(found=False)
            await self._record_read(request, deployment, agent)
            return DocumentReply(found=True, value=decrypted(found.body))
        if request.action == "variable":
            missing = object()
            value: Any = await variables.aget(name, missing, store=self.store)
            return DocumentReply(
                found=value is not missing, value=None if value is missing else value
            )
        if request.action == "set_variable":
            await variables.aset(name, request.value, store=self.store, tags=request.tags)
            return DocumentReply(found=True)
        if request.action == "unset_variable":
            return DocumentReply(found=await variables.aunset(name, store=self.store))
        artifact = await latest(self.store, name)
        return DocumentReply(found=artifact is not None,
                             value=artifact.to_dict() if artifact else None)  # fmt: skip

    async def _record_read(
        self, request: DocumentRequest, deployment: str, agent: str | None
    ) -> None:
        """Who was handed which block: one event in a stream of its own (no two reads contend)."""
        fields = {"block": request.name, "run_id": request.run_id, "attempt": request.attempt,
                  "deployment": deployment, "agent": agent, "actor": f"agent:{agent}"}  # fmt: skip
        await self.store.append([make_record(str(uuid.uuid4()), 1, EventType.BLOCK_READ, fields)])


__all__ = ["RunDocuments"]
