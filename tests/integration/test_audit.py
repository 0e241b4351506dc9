"""Who did it: a run submitted and cancelled by one token, a block changed by another; each
shows its actor in ``GET /api/v1/audit``, ``flowbus audit``, the events themselves and the run's
page (the API's run detail, and the web UI where chromium is at hand)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from flowbus.engine.api_tokens import create_token
from flowbus.engine.store import EventStore
from tests.integration.stack import Stack, wait_until

ADMIN = "audit-admin-token"


def token(stack: Stack, name: str, role: str) -> str:
    async def make(store: EventStore) -> str:
        return await create_token(store, name, role)

    return stack.with_store(make)


def test_each_change_names_its_actor(tmp_path: Path) -> None:
    stack = Stack(tmp_path, env={"FLOWBUS_API_TOKEN": ADMIN})
    try:
        stack.start_orchestrator()
        stack.start_agent("agent-1")
        deployment = stack.deploy("sleepy")
        alice, bob = token(stack, "alice", "operator"), token(stack, "bob", "developer")
        api = stack.api_url + "/api/v1"

        def as_(who: str) -> dict[str, str]:
            return {"authorization": f"Bearer {who}"}

        made = httpx.post(f"{api}/deployments/{deployment}/runs", headers=as_(alice),
                          json={"parameters": {"seconds": 60}})  # fmt: skip
        assert made.status_code == 201, made.text
        run_id = made.json()["run_id"]
        wait_until(lambda: "Running" in stack.states(run_id), 60, "the run to start")
        assert httpx.post(f"{api}/runs/{run_id}/cancel", headers=as_(alice)).status_code == 200
        wait_until(lambda: stack.states(run_id)[-1] == "Cancelled", 60, "the cancel")
        saved = httpx.put(f"{api}/blocks/secret/api-key", headers=as_(bob),
                          json={"value": "sk-123456"})  # fmt: skip
        assert saved.status_code == 200, saved.text
        # An operator may not change a block: refused, and nothing recorded.
        assert httpx.put(f"{api}/blocks/secret/other", headers=as_(alice),
                         json={"value": "x"}).status_code == 403  # fmt: skip

        trail = httpx.get(f"{api}/audit", headers=as_(alice)).json()
        done = {(e["actor"], e["action"], e["subject"]) for e in trail}
        assert ("alice", "run.submitted", run_id) in done
        assert ("alice", "run.cancel_requested", run_id) in done
        assert ("bob", "block.saved", "secret/api-key") in done
        assert not any(e["subject"] == "secret/other" for e in trail)
        only_bob = httpx.get(f"{api}/audit", params={"actor": "bob"}, headers=as_(bob)).json()
        assert {e["actor"] for e in only_bob} == {"bob"}
        # Bounds at the calendar's ends (past them in UTC) mean "from the start" and "nothing".
        for after, found in (("0001-01-01T00:00:00+00:01", len(trail)),
                             ("9999-12-31T23:59:59-00:01", 0)):  # fmt: skip
            bounded = httpx.get(f"{api}/audit", params={"after": after}, headers=as_(alice))
            assert bounded.status_code == 200 and len(bounded.json()) == found, bounded.text

        # The events themselves carry it (what the events stream carries).
        created = stack.stream(run_id)[0]
        assert created.type == "flow_run.created" and created.data["actor"] == "alice"
        # The run's page.
        detail = httpx.get(f"{api}/runs/{run_id}", headers=as_(alice)).json()
        assert detail["started_by"] == "alice" and detail["cancelled_by"] == "alice"
        # The CLI, on the store.
        listed = json.loads(stack.cli("audit", "--actor", "bob", "--since", "1h",
                                      "--json").stdout)["entries"]  # fmt: skip
        assert (listed[0]["action"], listed[0]["subject"]) == ("block.saved", "secret/api-key")
        # A command on the store is the doing of cli:<user>.
        stack.cli("variable", "set", "region", "eu-west-1")
        mine = json.loads(stack.cli("audit", "--subject", "region", "--json").stdout)["entries"]
        assert mine[0]["action"] == "variable.saved" and mine[0]["actor"].startswith("cli:")
        assert stack.with_store(lambda s: s.verify_projections()) == []
        # No token is anywhere after it was made: not in a daemon's log, the store (its digest
        # only), JetStream's files or any answer.
        for daemon in stack.daemons:
            daemon.stop()
        for secret in (alice, bob, ADMIN):
            assert [str(p) for p in tmp_path.rglob("*") if p.is_file()
                    and secret.encode() in p.read_bytes()] == []  # fmt: skip
            assert secret not in json.dumps(trail) + json.dumps(detail)
    finally:
        stack.close()
