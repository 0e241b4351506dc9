"""Deployment triggers as Prefect documents them, declared in prefect.yaml and with
``flow.deploy``, against a real nats-server, orchestrator and agent: matching events start runs
with parameters from the event, ``after`` and ``for_each`` count per resource, ``match_related``
looks at related resources, and a deploy replaces a deployment's triggers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.stack import Stack, wait_until

ORDERS = """
from flowbus import flow


@flow
def handle_order(user_id: str, amount: int = 0) -> str:
    return f"{user_id}:{amount}"
"""

PREFECT_YAML = """
deployments:
  - name: prod
    entrypoint: orders.py:handle_order
    work_pool: {name: default}
    triggers:
      - type: event
        expect: [order.complete]
        after: [order.created]
        for_each: [prefect.resource.id]
        parameters:
          user_id: "{{ event.resource.id }}"
          amount: "{{ event.payload.amount }}"
      - type: event
        enabled: true
        match: {prefect.resource.id: "refund.*", team: finance}
        match_related: {prefect.resource.role: approver, prefect.resource.id: "user.boss"}
        expect: [refund.requested]
        parameters: {user_id: "refund of {{ event.resource['team'] }}"}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "orders.py").write_text(ORDERS)
    (folder / "prefect.yaml").write_text(PREFECT_YAML)
    return folder


def flowbus(stack: Stack, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "flowbus", *args], cwd=folder, env=stack.env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def runs(stack: Stack) -> list[Any]:
    return stack.with_store(lambda s: s.list_flow_runs(deployment="handle-order/prod", limit=50))


async def test_prefect_yaml_triggers_start_runs_from_matching_events(
    stack: Stack, project: Path
) -> None:
    stack.start_orchestrator()
    stack.start_agent("agent-1")
    deployed = flowbus(stack, project, "deploy", "--all")
    assert "handle-order-prod-trigger-1" in deployed.stdout, deployed.stdout
    listed = json.loads(flowbus(stack, project, "automation", "ls", "--json").stdout)
    assert sorted(a["name"] for a in listed["automations"]) == [
        "handle-order-prod-trigger-1", "handle-order-prod-trigger-2"
    ]  # fmt: skip

    async with stack.client() as client:
        # Complete before created: not counted; created of another user arms nothing here.
        await client.emit("order.complete", "user.1", payload={"amount": 5}, event_id="c0")
        await client.emit("order.created", "user.2", event_id="a2")
        await client.emit("order.created", "user.1", event_id="a1")
        await client.emit("order.complete", "user.1", payload={"amount": 7}, event_id="c1")
        wait_until(lambda: len(runs(stack)) == 1, what="the trigger's run")
        [run] = runs(stack)
        assert run.parameters == {"user_id": "user.1", "amount": 7}
        assert (await client.wait(run.id, timeout=60)).result == repr("user.1:7")

        # Related resources: a refund without the approver starts nothing; with it, one run.
        await client.emit("refund.requested", "refund.9", labels={"team": "finance"},
                          event_id="r0")  # fmt: skip
        await client.emit("refund.requested", "refund.9", labels={"team": "finance"},
                          related=[{"prefect.resource.id": "user.boss",
                                    "prefect.resource.role": "approver"}],
                          event_id="r1")  # fmt: skip
        wait_until(lambda: len(runs(stack)) == 2, what="the refund's run")
        refund = next(r for r in runs(stack) if r.id != run.id)
        assert refund.parameters == {"user_id": "refund of finance", "amount": 0}
        detail = httpx.get(f"{stack.api_url}/api/v1/runs/{refund.id}").json()
        assert detail["triggered_by"]["automation"] == "handle-order-prod-trigger-2"
        assert detail["triggered_by"]["event_id"] == "r1"

    # Deployed again without triggers: the deployment's triggers go, as in Prefect.
    (project / "prefect.yaml").write_text(PREFECT_YAML.split("    triggers:")[0])
    flowbus(stack, project, "deploy", "--all")
    listed = json.loads(flowbus(stack, project, "automation", "ls", "--json").stdout)
    assert listed["automations"] == []


def test_flow_deploy_with_triggers_and_bad_triggers(stack: Stack, project: Path) -> None:
    script = textwrap.dedent("""
        import sys
        from flowbus.events import DeploymentEventTrigger
        from flowbus.events.schemas.deployment_triggers import DeploymentEventTrigger as Same
        from orders import handle_order

        assert Same is DeploymentEventTrigger
        handle_order.deploy("py", work_pool_name="default", triggers=[DeploymentEventTrigger(
            expect={"user.signed-up"}, threshold=2, within=60,
            parameters={"user_id": "{{ event.resource.id }}"})])
        try:
            handle_order.deploy("bad", triggers=[{"type": "compound", "triggers": []}])
        except Exception as exc:
            print(type(exc).__name__, exc)
        try:
            DeploymentEventTrigger(expect={"x"}, posture="Proactive", within=60)
        except Exception as exc:
            print("Proactive:", exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=project, env=stack.env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "UsageError trigger 1: type 'compound' is not supported" in done.stdout
    assert "Proactive deployment triggers" in done.stdout
    listed = json.loads(flowbus(stack, project, "automation", "ls", "--json").stdout)
    [made] = listed["automations"]
    assert made["name"] == "handle-order-py-trigger-1"
    assert made["trigger"]["threshold"] == 2 and made["trigger"]["within"] == 60
    assert made["owner"] == "deployment/handle-order/py"
    names = [d.name for d in stack.with_store(lambda s: s.list_deployments())]
    assert "handle-order/bad" not in names  # refused before anything was saved
