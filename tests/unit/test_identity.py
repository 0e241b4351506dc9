"""A request signed with a ``flowbus auth`` credential names its sender; nothing else does."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowbus.broker.identity import IdentityChecker, Signer, actor_of, jwt_claims, read_creds
from flowbus.broker.nats_auth import add_agent, init


def signer(path: Path) -> Signer:
    found = read_creds(path)
    assert found is not None
    return Signer(*found)


def checker_of(folder: Path) -> IdentityChecker:
    found = read_creds(folder / "orchestrator.creds")
    assert found is not None
    claims = jwt_claims(found[0])
    assert claims is not None
    return IdentityChecker(claims["iss"])


def test_a_signed_request_names_its_user_and_a_changed_one_nobody(tmp_path: Path) -> None:
    folder, other = tmp_path / "auth", tmp_path / "other"
    init(folder)
    init(other)
    agent = add_agent(folder, "etl-1", ("etl",))
    checker = checker_of(folder)
    body = b'{"run_id": "r1", "actor": "alice"}'
    headers = signer(folder / "service.creds").headers("flowbus.api.cancel", body)
    assert checker.sender("flowbus.api.cancel", body, headers) == "service"
    assert checker.sender("flowbus.api.cancel", body + b" ", headers) is None  # body changed
    assert checker.sender("flowbus.api.retry", body, headers) is None  # another subject
    assert checker.sender("flowbus.api.cancel", body, None) is None
    assert (
        signer(agent).headers("s", b"x")
        and checker.sender("s", b"x", signer(agent).headers("s", b"x")) == "etl-1"
    )
    # A user of another account (another installation's, or one made by an attacker).
    foreign = signer(other / "service.creds").headers("flowbus.api.cancel", body)
    assert checker.sender("flowbus.api.cancel", body, foreign) is None
    # Another user's JWT with this signature: the JWT is not the signer's.
    mixed = {**headers, "Flowbus-Identity": signer(folder / "viewer.creds").jwt}
    assert checker.sender("flowbus.api.cancel", body, mixed) is None
    assert IdentityChecker(None).sender("flowbus.api.cancel", body, headers) is None


@pytest.mark.parametrize(
    ("declared", "sender", "recorded"),
    [
        ("alice", None, "alice"),  # no proof: its word (no identities on this server)
        ("alice", "service", "nats:service"),  # proven: the credential's user, not its word
        (None, "service", "nats:service"),
        ("alice", "orchestrator", "alice"),  # the API, in the orchestrator, for a token
        (None, "orchestrator", "nats:orchestrator"),
        (None, None, None),
    ],
)
def test_the_actor_recorded(declared: str | None, sender: str | None, recorded: str | None) -> None:
    assert actor_of(declared, sender) == recorded
