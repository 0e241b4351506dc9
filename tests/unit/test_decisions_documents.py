"""Who the orchestrator hands a block, a variable or an artifact to: the holder of the run's
open attempt, proven by the request's MAC, and a block only if its deployment lists it."""

from __future__ import annotations

from typing import Any

import pytest

from flowbus.agents.decisions.documents import block_allowed, document_refusal
from flowbus.broker.fencing import MAC_HEADER, FenceChecker
from flowbus.broker.run_documents import DocumentRequest, signed

from .decision_tables import HELD, RUN, S, entry


def ask(action: Any = "block", name: str = "secret/api-key", attempt: int = 1) -> DocumentRequest:
    return DocumentRequest(run_id=RUN, attempt=attempt, action=action, name=name)


@pytest.mark.parametrize(
    ("run", "request_", "mac", "blocks", "refused"),
    [
        (entry(S.RUNNING, **HELD), ask(), "", None, ""),
        (entry(S.RUNNING, **HELD), ask("variable", "region"), "", [], ""),  # not a block
        (entry(S.RUNNING, **HELD), ask(), "", ["secret/api-*"], ""),
        (entry(S.RUNNING, **HELD), ask(), "", ["secret/other"], "may not load block"),
        (entry(S.RUNNING, **HELD), ask(), "", [], "its blocks: none"),
        (entry(S.RUNNING, **HELD), ask(), "forged", None, "not signed by the holder"),
        (entry(S.RUNNING, **HELD), ask(attempt=2), "", None, "does not hold"),
        (entry(S.RUNNING, **{**HELD, "open": False}), ask(), "", None, "no attempt does"),
        (entry(S.COMPLETED, **{**HELD, "open": False}), ask(), "", None, "does not hold"),
        (entry(S.SCHEDULED), ask(), "", None, "does not hold"),
        (None, ask(), "", None, "no run"),
    ],
)
def test_who_is_answered(
    run: Any, request_: DocumentRequest, mac: str, blocks: list[str] | None, refused: str
) -> None:
    before = run.copy() if run is not None else None
    verdict = document_refusal(run, request_, mac, blocks)
    assert run == before
    assert (refused in verdict and verdict) if refused else verdict == ""


def test_patterns_match_type_and_name() -> None:
    assert block_allowed("secret/api-key", None)
    assert block_allowed("secret/api-key", ["json/*", "secret/*"])
    assert not block_allowed("secret/api-key", ["secret/api"])
    assert not block_allowed("webhook/api-key", ["secret/*"])


def test_a_request_signed_with_its_attempt_key_passes_the_fence_and_no_other() -> None:
    fences = FenceChecker([b"f" * 32])
    key = bytes.fromhex(fences.grant(RUN, 1))
    good = signed(ask(), key)

    def problem(request: DocumentRequest) -> str:
        return fences.problem(RUN, request.attempt, request.signed_bytes(),
                              {MAC_HEADER: request.mac})  # fmt: skip

    assert problem(good) == ""
    assert problem(good.model_copy(update={"name": "secret/other"})) != ""  # covered by MAC
    assert problem(good.model_copy(update={"attempt": 2})) != ""
    assert problem(signed(ask(), b"k" * 32)) != ""
    assert problem(ask()) != ""  # unsigned
