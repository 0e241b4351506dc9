"""``flowbus token``: made once and shown once, listed without the token, revoked; bad input is
a clear error (exit 2) that changes nothing."""

from __future__ import annotations

import json

from tests.e2e.conftest import Shell


def test_create_list_revoke_and_bad_input(shell: Shell) -> None:
    made = json.loads(shell.flowbus("token", "create", "ci", "--role", "operator",
                                    "--expires", "90d", "--json").stdout)  # fmt: skip
    assert made["name"] == "ci" and made["token"].startswith("fbt_")
    shell.flowbus("token", "create", "grafana", "--role", "metrics")
    listed = shell.flowbus("token", "ls", "--json").stdout
    assert made["token"] not in listed
    tokens = {t["name"]: t for t in json.loads(listed)["tokens"]}
    assert tokens["ci"]["role"] == "operator" and tokens["ci"]["expires"]
    assert tokens["grafana"]["expires"] is None and tokens["grafana"]["last_used"] is None

    for args, says in (
        (["create", "ci", "--role", "viewer"], "exists"),
        (["create", "x", "--role", "owner"], "no role 'owner'"),
        (["create", "Bad Name", "--role", "viewer"], "token name"),
        (["create", "y", "--role", "viewer", "--expires", "soon"], "duration"),
        (["revoke", "nobody"], "no token named 'nobody'"),
    ):
        refused = shell.flowbus("token", *args, check=False)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert says in refused.stderr, (args, refused.stderr)
    assert len(json.loads(shell.flowbus("token", "ls", "--json").stdout)["tokens"]) == 2

    shell.flowbus("token", "revoke", "ci")
    names = [t["name"] for t in json.loads(shell.flowbus("token", "ls", "--json").stdout)["tokens"]]
    assert names == ["grafana"]
