"""Schemathesis over the API's own OpenAPI schema, against a real server: whatever it sends,
no 500, and every response matches the schema."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from .stack import Stack

TOKEN = "fuzz-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def stack(stack: Stack) -> Stack:
    """The shared stack with an orchestrator (its API under an admin token: the fuzzer makes
    tokens, and a made token closes an open API), a deployment and an agent."""
    stack.start_orchestrator({"FLOWBUS_API_TOKEN": TOKEN})
    stack.deploy("quick")
    stack.start_agent("agent-1")
    return stack


def test_no_server_errors_and_responses_match_the_schema(stack: Stack) -> None:
    schema = schemathesis.openapi.from_url(stack.api_url + "/openapi.json")
    fuzzed, failures = [], []
    for found in schema.get_all_operations():
        operation = found.ok()
        if operation.path.endswith("stream"):
            continue  # live streams never end: tested with a real subscriber instead
        fuzzed.append(f"{operation.method.upper()} {operation.path}")

        # A run's parameters are checked against its deployment's own schema, a resume's input
        # against its pause's model, recorded events and deployments against flowbus's event
        # models, documents, blocks and custom events against their own models, which OpenAPI
        # cannot state: a 422 for values that look valid to it is right, not a rejection.
        judged_elsewhere = (
            operation.path.endswith(("/runs", "/resume", "/events", "/custom-events"))
            or (operation.method.upper() == "POST" and operation.path.endswith("/deployments"))
            or operation.method.upper() == "PUT"  # documents and blocks: by their kind's model
        )
        check = fuzz(operation, [positive_data_acceptance] if judged_elsewhere else [])
        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert len(fuzzed) >= 20, fuzzed
    assert not failures, "\n\n".join(failures)
    assert httpx.get(stack.api_url + "/api/v1/runs", headers=AUTH, timeout=10).status_code == 200


def fuzz(operation: Any, excluded: list[Any]) -> Any:
    """A hypothesis test that sends ``operation`` the cases schemathesis makes of it."""

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=AUTH, excluded_checks=excluded)

    return check
