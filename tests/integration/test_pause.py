"""Pause and resume against a real agent: a paused run holds no agent slot, a resume with
invalid input is refused with pydantic's message, a valid one runs the flow on to the end
with the input; an unresumed pause fails at its timeout; a paused run can be cancelled."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.stack import Stack, wait_until


@pytest.fixture
def stack(stack: Stack) -> Stack:
    """The shared stack with an orchestrator and the two deployments."""
    stack.start_orchestrator()
    stack.deploy("needs_approval")
    stack.deploy("quick")
    return stack


def test_a_paused_run_frees_its_slot_and_resumes_with_input(stack: Stack) -> None:
    stack.start_agent("agent-1", "-c", "1")  # one slot: the quick run needs it while paused
    paused = stack.submit_over_http("needs-approval/test", amount=250)
    wait_until(lambda: stack.states(paused)[-1:] == ["Paused"], what="the run to pause")
    quick = stack.submit_over_http("quick/test")
    assert stack.final_states(quick)[-1] == "Completed"  # the paused run held no slot

    api = f"{stack.api_url}/api/v1/runs/{paused}"
    detail = httpx.get(api).json()
    assert detail["pause"]["pause_key"] == "pause-1"
    assert detail["pause"]["input_schema"]["required"] == ["approved"]

    refused = httpx.post(f"{api}/resume", json={"input": {"approved": "perhaps"}})
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["loc"] == ["approved"]
    assert stack.states(paused)[-1] == "Paused"  # nothing changed
    bad_cli = stack.cli("runs", "resume", paused, "--input", '{"note": 1}', check=False)
    assert bad_cli.returncode == 2 and "approved" in bad_cli.stderr

    out = stack.cli("runs", "resume", paused, "-f", "approved=true", "-f", "note=ok by ops",
                    "--json")  # fmt: skip
    assert json.loads(out.stdout) == {"run_id": paused, "state": "Scheduled"}
    states = stack.final_states(paused)
    assert states[-1] == "Completed"
    assert states.count("Paused") == 1 and states.count("Running") == 2
    assert httpx.get(api).json()["result"] == "approved: ok by ops"
    again = httpx.post(f"{api}/resume", json={"input": {"approved": True}})
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_paused"


def test_an_unresumed_pause_fails_and_a_paused_run_can_be_cancelled(stack: Stack) -> None:
    stack.start_agent("agent-1")
    first = stack.submit_over_http("needs-approval/test")
    wait_until(lambda: stack.states(first)[-1:] == ["Paused"], what="the run to pause")
    assert stack.cli("runs", "cancel", first, "--json").returncode == 0
    assert stack.final_states(first)[-1] == "Cancelled"

    second = stack.submit_over_http("needs-approval/test", timeout=1)
    wait_until(lambda: stack.states(second)[-1:] == ["Paused"], what="the run to pause")
    assert "resume before" in (stack.stream(second)[-1].data["state"]["message"] or "")
    assert stack.final_states(second)[-1] == "Failed"  # the janitor: not resumed in time
    assert "not resumed in time" in stack.stream(second)[-1].data["state"]["message"]
