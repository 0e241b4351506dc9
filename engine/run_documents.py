"""Where a flow run's blocks, variables and artifacts come from when it runs on an agent.

A run by hand reads and writes them in the store (``$FLOWBUS_STORE_URL``). A run on an agent
holds no store URL and no secret key: the agent sets ``run_documents_var`` to a source that asks
the orchestrator (``flowbus.agents.run_documents``), which answers only the holder of the run.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Protocol


class RunDocuments(Protocol):
    """What a run may read and write of the store's documents, through someone who may."""

    async def block(self, key: str) -> dict[str, Any] | None:
        """The block ``<type>/<name>``: ``{"data", "secret_fields"}``, secrets decrypted."""

    async def variable(self, name: str) -> tuple[bool, Any]:
        """Whether the variable is set, and its value."""

    async def set_variable(self, name: str, value: Any, tags: list[str] | None = None) -> None: ...

    async def unset_variable(self, name: str) -> bool:
        """False when it was not set."""

    async def artifact(self, key: str) -> dict[str, Any] | None:
        """The latest artifact of ``key`` (``ArtifactView`` as a dict), or None."""


run_documents_var: ContextVar[RunDocuments | None] = ContextVar(
    "flowbus_run_documents", default=None
)

__all__ = ["RunDocuments", "run_documents_var"]
