"""Whether the orchestrator answers a run's request for a block, a variable or an artifact
(``flowbus.agent.documents``): only the holder of the run's open attempt, proven by the
request's MAC, and a block only if the run's deployment may load it."""

from __future__ import annotations

from fnmatch import fnmatchcase

from flowbus.agents.run_entry import RunEntry, holds
from flowbus.broker.run_documents import DocumentRequest


def block_allowed(block: str, patterns: list[str] | None) -> bool:
    """Whether ``<type>/<name>`` matches one of a deployment's block patterns (None: any)."""
    return patterns is None or any(fnmatchcase(block, pattern) for pattern in patterns)


def document_refusal(
    entry: RunEntry | None,
    request: DocumentRequest,
    mac_problem: str,
    allowed_blocks: list[str] | None,
) -> str:
    """Why ``request`` is refused ("" when it is answered). ``mac_problem`` is the fence
    checker's verdict on its MAC; ``allowed_blocks`` the run's deployment's patterns."""
    run = request.run_id
    if entry is None:
        return f"no run {run} of a deployment is known"
    if not holds(entry, request.attempt):
        held = f"attempt {entry.attempt}" if entry.open else "no attempt"
        return f"attempt {request.attempt} does not hold run {run} ({held} does)"
    if mac_problem:
        return f"not signed by the holder of attempt {request.attempt} of run {run}"
    if request.action == "block" and not block_allowed(request.name, allowed_blocks):
        shown = ", ".join(allowed_blocks or []) or "none"
        return (
            f"deployment {entry.deployment} may not load block {request.name} (its blocks: {shown})"
        )
    return ""


__all__ = ["block_allowed", "document_refusal"]
