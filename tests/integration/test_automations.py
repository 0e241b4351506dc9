"""Automations against a real nats-server, orchestrator and agent: custom events start
deployments with parameters from the event, run failures publish to NATS and pause a queue,
a webhook block is called, an absence fires at its slot, and no event fires twice, even when
it comes again after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from flowbus.agents.automations import AutomationEngine
from flowbus.broker import subjects
from flowbus.engine.automations import AbsenceTrigger, Automation, EventPattern, PublishNats
from flowbus.engine.store import SqliteEventStore
from tests.integration.stack import Stack, wait_until

RAW_TO_ETL = """
name: raw-file-to-quick
description: a raw file arrived
trigger:
  kind: event
  match: {type: file.uploaded, labels: {bucket: raw}}
actions:
  - kind: run-deployment
    deployment: quick/test
    parameters: {n: "{{ event.payload.rows }}"}
"""

ON_FAILURES = """
- name: failure-alert
  trigger: {kind: event, match: {type: flow-run.Failed, labels: {deployment: fails/test}}}
  actions:
    - {kind: publish, subject: flowbus.custom.alerts.failed, payload: {run: "{{ event.resource }}",
       why: "{{ event.payload.message }}"}}
    - {kind: webhook, block: ops}
- name: two-failures-pause
  trigger: {kind: event, threshold: 2, within: 60,
            match: {type: flow-run.Failed, labels: {deployment: fails/*}}}
  actions:
    - {kind: pause-queue, queue: default}
"""


ON_COMPLETED = """
name: completed-alert
trigger: {kind: event, match: {type: flow-run.Completed, labels: {deployment: quick/test}}}
actions:
  - {kind: publish, subject: flowbus.custom.alerts.done, payload: {run: "{{ event.resource }}"}}
"""


def runs_of(stack: Stack, deployment: str) -> list[Any]:
    return stack.with_store(lambda s: s.list_flow_runs(deployment=deployment, limit=100))


def test_an_uploaded_file_starts_a_deployment_once(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "raw.yaml").write_text(RAW_TO_ETL)
    created = json.loads(stack.cli("automation", "create", str(tmp_path / "raw.yaml"), "--json")
                         .stdout)["automations"]  # fmt: skip
    assert [a["name"] for a in created] == ["raw-file-to-quick"]
    stack.start_orchestrator()
    stack.start_agent("agent-1")
    stack.deploy("quick")

    stack.cli("events", "emit", "file.uploaded", "--resource", "s3://other/a.csv",
              "-l", "bucket=other", "--payload", '{"rows": 9}')  # fmt: skip
    out = stack.cli("events", "emit", "file.uploaded", "--resource", "s3://raw/b.csv",
                    "-l", "bucket=raw", "--payload", '{"rows": 4}', "--id", "upload-1",
                    "--json")  # fmt: skip
    assert json.loads(out.stdout)["id"] == "upload-1"
    wait_until(lambda: len(runs_of(stack, "quick/test")) == 1, what="the automation's run")
    run = runs_of(stack, "quick/test")[0]
    assert run.parameters == {"n": 4}  # the payload's number, kept a number
    assert stack.final_states(run.id)[-1] == "Completed"
    detail = httpx.get(f"{stack.api_url}/api/v1/runs/{run.id}").json()
    assert detail["triggered_by"] == {"automation": "raw-file-to-quick", "event_id": "upload-1",
                                      "event_type": "file.uploaded"}  # fmt: skip
    assert "automation" in detail["tags"]

    # The same event again, after a restart, under another message id: nothing more.
    stack.orchestrator.kill()  # type: ignore[union-attr]
    stack.start_orchestrator()

    async def publish_again() -> None:
        client = await nats.connect(stack.url)
        event = {"id": "upload-1", "type": "file.uploaded", "occurred": datetime.now(UTC)
                 .isoformat(), "resource": "s3://raw/b.csv", "labels": {"bucket": "raw"},
                 "payload": {"rows": 4}}  # fmt: skip
        await client.jetstream().publish(subjects.custom_subject("file.uploaded"),
                                         json.dumps(event).encode(),
                                         headers={"Nats-Msg-Id": "another-id"})  # fmt: skip
        await client.jetstream().publish(subjects.custom_subject("file.uploaded"), b"{not json")
        await client.close()

    asyncio.run(publish_again())
    stack.cli("events", "emit", "file.uploaded", "-l", "bucket=raw", "--payload", '{"rows": 1}',
              "--id", "upload-2")  # fmt: skip
    wait_until(lambda: len(runs_of(stack, "quick/test")) == 2, what="upload-2's run")
    assert sorted(r.parameters["n"] for r in runs_of(stack, "quick/test")) == [1, 4]

    listed = json.loads(stack.cli("automation", "ls", "--json").stdout)["automations"]
    assert listed[0]["enabled"] is True
    status = httpx.get(f"{stack.api_url}/api/v1/automations").json()[0]["status"]
    assert status["fired"] == 2 and status["last_event"]["id"] == "upload-2"
    assert status["last_actions"][0]["action"] == "run-deployment"
    assert status["last_actions"][0]["ok"] is True and status["last_actions"][0]["run_id"]
    stack.cli("automation", "pause", "raw-file-to-quick")
    assert httpx.get(f"{stack.api_url}/api/v1/automations").json()[0]["enabled"] is False
    bad = stack.cli("events", "emit", "no spaces allowed", check=False)
    assert bad.returncode == 2 and "invalid event" in bad.stderr


def test_runs_state_changes_are_followed_only_while_an_automation_wants_them(
    stack: Stack, tmp_path: Path
) -> None:
    """No automation: no consumer delivers every run's states to the engine. One saved: the
    consumer is there when the command returns, and the automation fires on the next run.
    Paused: the consumer goes; resumed, the runs of the pause do not fire it. Deleted from
    under the engine: made again, missing nothing."""
    stack.start_orchestrator()
    stack.start_agent("agent-1")
    stack.deploy("quick")

    async def consumer_exists() -> bool:
        client = await nats.connect(stack.url)
        try:
            await client.jetstream().consumer_info(subjects.EVENTS_STREAM, "automations-runs")
            return True
        except nats.js.errors.NotFoundError:
            return False
        finally:
            await client.close()

    def exists() -> bool:
        return asyncio.run(consumer_exists())

    async def stored_alerts() -> list[str]:
        """The runs named by the alerts the custom events stream holds, in order."""
        client = await nats.connect(stack.url)
        try:
            found = []
            alerts = await client.jetstream().subscribe("flowbus.custom.alerts.done",
                                                        ordered_consumer=True)  # fmt: skip
            with contextlib.suppress(nats.errors.TimeoutError):
                while True:
                    found.append(json.loads((await alerts.next_msg(timeout=1)).data))
            return [alert["payload"]["run"] for alert in found]
        finally:
            await client.close()

    def alerts() -> list[str]:
        return asyncio.run(stored_alerts())

    first = stack.submit_over_http("quick/test", n=1)
    assert stack.final_states(first)[-1] == "Completed"
    assert not exists()

    (tmp_path / "done.yaml").write_text(ON_COMPLETED)
    stack.cli("automation", "create", str(tmp_path / "done.yaml"))
    wait_until(exists, what="the run-state consumer, once an automation wants it")
    second = stack.submit_over_http("quick/test", n=2)
    assert stack.final_states(second)[-1] == "Completed"
    wait_until(lambda: alerts() == [second], what="the automation to fire on the second run")

    stack.cli("automation", "pause", "completed-alert")
    wait_until(lambda: not exists(), what="the consumer to go with the last automation")
    paused = stack.submit_over_http("quick/test", n=3)
    assert stack.final_states(paused)[-1] == "Completed"
    stack.cli("automation", "resume", "completed-alert")
    wait_until(exists, what="the consumer again")
    third = stack.submit_over_http("quick/test", n=4)
    assert stack.final_states(third)[-1] == "Completed"
    wait_until(lambda: len(alerts()) >= 2, what="the automation to fire on the third run")
    assert alerts() == [second, third]  # not on the first, nor on the run of the pause

    # Deleted by someone else (an engine that has not yet heard it stepped down): made again,
    # and the run that ended meanwhile fires the automation all the same.
    async def delete_consumer() -> None:
        client = await nats.connect(stack.url)
        await client.jetstream().delete_consumer(subjects.EVENTS_STREAM, "automations-runs")
        await client.close()

    asyncio.run(delete_consumer())
    fourth = stack.submit_over_http("quick/test", n=5)
    assert stack.final_states(fourth)[-1] == "Completed"
    wait_until(lambda: len(alerts()) >= 3, what="the automation to fire on the fourth run")
    assert alerts() == [second, third, fourth], (second, third, fourth, paused, first, alerts())


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Hook.received.append((self.headers.get("Authorization", ""), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_failures_publish_call_a_webhook_and_pause_a_queue(stack: Stack, tmp_path: Path) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stack.cli("block", "set", "webhook/ops", f"url=http://127.0.0.1:{server.server_port}/x",
                  "token=hook-token-123")  # fmt: skip
        (tmp_path / "failures.yaml").write_text(ON_FAILURES)
        stack.cli("automation", "create", str(tmp_path / "failures.yaml"))
        stack.start_orchestrator()
        stack.start_agent("agent-1")
        stack.deploy("fails")

        async def fail_twice() -> list[dict[str, Any]]:
            client = await nats.connect(stack.url)
            alerts = await client.subscribe("flowbus.custom.alerts.failed")
            await client.flush()  # the server knows the subscription before any run fails
            runs = []
            for reason in ("disk full", "bad row 7"):
                response = httpx.post(f"{stack.api_url}/api/v1/deployments/fails/test/runs",
                                      json={"parameters": {"reason": reason}})  # fmt: skip
                runs.append(response.json()["run_id"])
            # A custom event: the rendered payload in it, and the automation that published it.
            got = [json.loads((await alerts.next_msg(timeout=20)).data) for _ in runs]
            assert {a["labels"]["flowbus.automation"] for a in got} == {"failure-alert"}
            assert {a["type"] for a in got} == {"alerts.failed"}
            got = [a["payload"] for a in got]
            await client.close()
            return got

        alerts = asyncio.run(fail_twice())
        assert sorted(a["why"] for a in alerts) == [
            "ValueError: bad row 7",
            "ValueError: disk full",
        ]
        wait_until(lambda: len(_Hook.received) == 2, what="the webhook calls")
        assert {auth for auth, _ in _Hook.received} == {"Bearer hook-token-123"}
        assert _Hook.received[0][1]["event"]["type"] == "flow-run.Failed"
        wait_until(
            lambda: any(q["settings"]["paused"] for q in
                        httpx.get(f"{stack.api_url}/api/v1/queues").json()),
            what="two failures to pause the queue",
        )  # fmt: skip
    finally:
        server.shutdown()


def test_an_absence_fires_once_per_slot(stack: Stack, tmp_path: Path) -> None:
    """The engine in this process against the stack's nats-server: a slot with no matching
    event in its window fires; the same slot again does not; a recent event prevents it."""

    async def main() -> None:
        client = await nats.connect(stack.url)
        store = SqliteEventStore(tmp_path / "automations.db")
        await store.open()
        try:
            engine = AutomationEngine(client, store)
            js = client.jetstream()
            from flowbus.broker.streams import ensure_streams

            await ensure_streams(js)
            engine._kv = await js.key_value(subjects.AUTOMATIONS_BUCKET)
            trigger = AbsenceTrigger(match=EventPattern(type="flow-run.Completed"),
                                     cron="0 7 * * *", within=3600)  # fmt: skip
            automation = Automation(
                name="etl-late", trigger=trigger,
                actions=[PublishNats(subject="flowbus.custom.alerts.late",
                                     payload="{{ event.type }}")],
            )  # fmt: skip
            alerts = await client.subscribe("flowbus.custom.alerts.late")
            await client.flush()
            slot = datetime(2026, 11, 24, 7, tzinfo=UTC)
            await engine._check_absence(automation, trigger, slot)
            alert = json.loads((await alerts.next_msg(timeout=5)).data)
            assert alert["payload"] == {"value": "automation.absence"}
            await engine._check_absence(automation, trigger, slot)  # the same slot: no
            await engine._seen("etl-late")  # a completion just now
            await engine._check_absence(automation, trigger, datetime.now(UTC))
            with pytest.raises(nats.errors.TimeoutError):
                await alerts.next_msg(timeout=0.5)
            assert engine.fired == 1
        finally:
            await store.close()
            await client.close()

    asyncio.run(main())
