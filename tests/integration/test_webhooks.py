"""Inbound webhooks against a real stack, with a real HTTP client: a GitHub-style push, signed
with HMAC-SHA256, becomes an event that starts a deployment run with the commit id as its
parameter; bad signatures, unknown URLs and templates that make no event are refused with the
reason (and a ``webhook.failed`` event); a rotated URL replaces the old one at once."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
import orjson

from flowbus.broker import subjects
from tests.integration.stack import Stack, wait_until

GITHUB_TEMPLATE = """{
  "event": "github.{{ headers['X-GitHub-Event'] }}",
  "id": "{{ headers['x-github-delivery'] }}",
  "resource": {
    "prefect.resource.id": "github.repo.{{ body.repository.full_name }}",
    "branch": "{{ body.ref | replace('refs/heads/', '') }}"
  },
  "payload": {"commit": "{{ body.head_commit.id }}", "pusher": {{ body.pusher | tojson }}}
}"""

ON_PUSH = """
name: push-to-on-push
trigger:
  kind: event
  match: {type: github.push, resource: "github.repo.acme/*", labels: {branch: main}}
actions:
  - kind: run-deployment
    deployment: on-push/test
    parameters: {commit: "{{ event.payload.commit }}", branch: "{{ event.resource['branch'] }}"}
"""

SECRET = "It's a Secret to Everybody"
COMMIT = "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"


def push(delivery: str, commit: str = COMMIT) -> bytes:
    return orjson.dumps({
        "ref": "refs/heads/main",
        "head_commit": {"id": commit, "message": "Fix the flux capacitor"},
        "repository": {"full_name": "acme/rockets"},
        "pusher": {"name": "ada"},
    })  # fmt: skip


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(stack: Stack, slug: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{stack.api_url}/hooks/{slug}", content=body, headers={
        "content-type": "application/json", "x-github-event": "push", **headers,
    }, timeout=30)  # fmt: skip


def runs(stack: Stack) -> list[Any]:
    return stack.with_store(lambda s: s.list_flow_runs(deployment="on-push/test", limit=50))


def make_webhook(stack: Stack, tmp_path: Path, name: str, template: str, *options: str) -> str:
    path = tmp_path / f"{name}.j2"
    path.write_text(template)
    made = json.loads(stack.cli("webhook", "create", name, "--template", f"@{path}", *options,
                                "--json").stdout)  # fmt: skip
    assert made["url"].endswith(f"/hooks/{made['slug']}")
    return str(made["slug"])


async def test_a_signed_github_push_starts_a_run_with_its_commit(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_orchestrator()
    stack.deploy("on_push")
    stack.start_agent("agent-1")
    stack.cli("block", "set", "secret/github-hook", f"value={SECRET}")
    (tmp_path / "on-push.yaml").write_text(ON_PUSH)
    stack.cli("automation", "create", str(tmp_path / "on-push.yaml"))
    slug = make_webhook(stack, tmp_path, "github", GITHUB_TEMPLATE,
                        "--signature-secret", "secret/github-hook")  # fmt: skip

    body = push("d-1")
    # Refused: no signature, a wrong one, another body's; and a URL nobody has.
    assert post(stack, slug, body).status_code == 401
    assert (
        post(stack, slug, body, **{"x-hub-signature-256": signed(body, "guess")}).status_code == 401
    )
    assert post(stack, slug, body, **{"x-hub-signature-256": signed(b"{}")}).status_code == 401
    assert post(stack, "not-a-slug", body).status_code == 404
    assert runs(stack) == []

    accepted = post(stack, slug, body, **{"x-hub-signature-256": signed(body),
                                          "x-github-delivery": "d-1"})  # fmt: skip
    assert accepted.status_code == 204, accepted.text
    # GitHub delivering it again (same delivery id): the same event, no second run.
    again = post(stack, slug, body, **{"x-hub-signature-256": signed(body),
                                       "x-github-delivery": "d-1"})  # fmt: skip
    assert again.status_code == 204
    wait_until(lambda: len(runs(stack)) == 1, what="the push's run")
    [run] = runs(stack)
    assert run.parameters == {"commit": COMMIT, "branch": "main"}
    async with stack.client() as client:
        assert (await client.wait(run.id, timeout=60)).result == repr(f"main@{COMMIT}")

    # A rotated URL: the old one is gone at once, the new one takes pushes.
    rotated = json.loads(stack.cli("webhook", "rotate", "github", "--json").stdout)["slug"]
    second = push("d-2", commit="b" * 40)
    headers = {"x-hub-signature-256": signed(second), "x-github-delivery": "d-2"}
    assert post(stack, slug, second, **headers).status_code == 404
    assert post(stack, rotated, second, **headers).status_code == 204
    wait_until(lambda: len(runs(stack)) == 2, what="the second push's run")

    # Nobody who reads documents learns a URL.
    listed = json.loads(stack.cli("webhook", "ls", "--json").stdout)["webhooks"]
    assert [w["name"] for w in listed] == ["github"] and "slug_sha256" not in listed[0]
    assert slug not in stack.cli("webhook", "ls").stdout


async def test_a_template_that_makes_no_event_is_a_400_and_a_webhook_failed_event(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_orchestrator()
    broken = make_webhook(stack, tmp_path, "broken", '{"event": {{ body.missing }} }')
    nameless = make_webhook(stack, tmp_path, "nameless", '{"payload": {{ body | tojson }} }')
    form = make_webhook(stack, tmp_path, "form", '{"event": "form.{{ body.kind }}"}')

    refused = post(stack, broken, b'{"x": 1}')
    assert refused.status_code == 400
    assert "did not make JSON" in refused.json()["error"]["message"]
    refused = post(stack, nameless, b'{"x": 1}')
    assert refused.status_code == 400 and "no name" in refused.json()["error"]["message"]
    ok = httpx.post(f"{stack.api_url}/hooks/{form}", data={"kind": "sent"}, timeout=30)
    assert ok.status_code == 204

    async with stack.client() as client:
        js = client.nats.jetstream()

        async def last(event_type: str) -> dict[str, Any]:
            found = await js.get_last_msg(subjects.CUSTOM_STREAM,
                                          subjects.custom_subject(event_type))  # fmt: skip
            return dict(orjson.loads(found.data))

        failed = await last("webhook.failed")
        assert failed["resource"] == "flowbus.webhook.nameless"
        assert "no name" in failed["payload"]["error"]
        sent = await last("form.sent")
        assert {"prefect.resource.id": "flowbus.webhook.form",
                "prefect.resource.role": "webhook"} in sent["related"]  # fmt: skip

    # A template Jinja cannot read is refused when made, not at the first request.
    bad = stack.cli("webhook", "create", "bad", "--template", "{{ body.x ", check=False)
    assert bad.returncode == 2 and "does not parse" in bad.stdout + bad.stderr
