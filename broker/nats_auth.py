"""NATS identities per role, made by flowbus: an operator, an account, and a user per role with
the subjects that role may use (NATS decentralised JWT auth, with a memory resolver).

``init(folder)`` writes:

- ``auth.conf``: the server settings (``operator``, ``system_account``, ``resolver: MEMORY`` and
  the accounts' JWTs) for a nats-server config to ``include``;
- ``<role>.creds`` for ``admin``, ``orchestrator``, ``service`` and ``viewer``: a user JWT and its
  seed, the file ``nats.connect(user_credentials=...)`` (and ``FLOWBUS_NATS_CREDS``) reads;
- ``keys/``: the operator's and account's seeds (mode 0600), with which ``add_agent`` signs one
  more user later, without a change to the server's configuration.

Each user's inbox is ``_INBOX_<user>`` (``inbox_prefix``): a user may subscribe to its own
replies only, so nobody reads an answer meant for another (a claim's attempt key, say).

What each role may do is ``permissions`` below; docs/security.md says it in words.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowbus.broker import subjects
from flowbus.broker.identity import jwt_claims, read_creds
from flowbus.engine.errors import UsageError

ROLES = ("admin", "orchestrator", "service", "viewer")
ACCOUNT = "FLOWBUS"
_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_NAME = "^[a-z0-9][a-z0-9-]{0,62}$"

JS = "$JS.API"
EVENTS, RUNS = subjects.EVENTS_STREAM, subjects.RUNS_STREAM


def inbox_prefix(user: str) -> str:
    return f"_INBOX_{user}"


@dataclass(frozen=True)
class Permissions:
    """Subjects a user may publish to and subscribe to (``deny`` wins over ``allow``)."""

    pub_allow: tuple[str, ...]
    sub_allow: tuple[str, ...]
    pub_deny: tuple[str, ...] = ()
    #: May answer requests sent to it (publish once to each request's reply subject).
    responds: bool = False

    def claims(self) -> dict[str, Any]:
        pub: dict[str, Any] = {"allow": list(self.pub_allow)}
        if self.pub_deny:
            pub["deny"] = list(self.pub_deny)
        out: dict[str, Any] = {"pub": pub, "sub": {"allow": list(self.sub_allow)}}
        if self.responds:
            out["resp"] = {"max": 1, "ttl": 0}
        return out


def _follow_events() -> tuple[str, ...]:
    """What following the events stream takes: ordered consumers on it, and its newest states."""
    return (
        f"{JS}.INFO",
        f"{JS}.STREAM.NAMES",  # which stream holds a subject (a subscribe without its stream)
        f"{JS}.STREAM.INFO.{EVENTS}",
        f"{JS}.CONSUMER.CREATE.{EVENTS}",
        f"{JS}.CONSUMER.CREATE.{EVENTS}.>",
        f"{JS}.CONSUMER.DELETE.{EVENTS}.>",
        f"{JS}.CONSUMER.INFO.{EVENTS}.>",
        f"{JS}.STREAM.MSG.GET.{EVENTS}",
        f"{JS}.DIRECT.GET.{EVENTS}.>",
        "$JS.FC.>",
    )


def permissions(role: str, user: str, queues: tuple[str, ...] = ()) -> Permissions:
    """What ``role`` may do on NATS, for the user named ``user`` (an agent: of ``queues``)."""
    inbox = f"{inbox_prefix(user)}.>"
    if role == "admin":  # the operator's: everything, deleting and purging streams included
        return Permissions(pub_allow=(">",), sub_allow=(">",))
    if role == "orchestrator":
        # Everything flowbus does, but nobody's data is deleted from a stream by it.
        return Permissions(
            pub_allow=(">",),
            sub_allow=(">",),
            pub_deny=(f"{JS}.STREAM.DELETE.>", f"{JS}.STREAM.PURGE.>"),
        )
    if role == "service":
        requests = tuple(
            getattr(subjects, name)
            for name in ("SUBMIT", "CANCEL", "RESUME", "RETRY", "RECORDED", "WAIT", "QUEUES",
                         "AGENTS", "DEPLOYMENTS", "LIMITS")
        )  # fmt: skip
        return Permissions(
            pub_allow=(*requests, subjects.CUSTOM_SUBJECTS, *_follow_events()),
            sub_allow=(inbox,),
        )
    if role == "viewer":
        return Permissions(pub_allow=_follow_events(), sub_allow=(inbox,))
    if role == "agent":
        return _agent(user, queues)
    raise UsageError(f"no role {role!r} (roles: {', '.join((*ROLES, 'agent'))})")


def _agent(name: str, queues: tuple[str, ...]) -> Permissions:
    if not queues:
        raise UsageError("an agent serves at least one queue (--queue)")
    per_queue: list[str] = []
    for queue in queues:
        consumer = subjects.queue_consumer(queue)
        per_queue += [
            f"{JS}.CONSUMER.INFO.{RUNS}.{consumer}",
            f"{JS}.CONSUMER.MSG.NEXT.{RUNS}.{consumer}",
            f"$JS.ACK.{RUNS}.{consumer}.>",
        ]
    kv = f"KV_{subjects.QUEUES_BUCKET}"
    claims = tuple(subjects.claim_subject(queue) for queue in queues)  # its queues' runs only
    requests = (*claims, subjects.HEARTBEAT, subjects.RELEASE, subjects.REPLAY, subjects.DOCUMENTS,
                subjects.SLOT_ACQUIRE, subjects.SLOT_RELEASE, subjects.RECORDED,
                subjects.WAIT)  # fmt: skip
    jetstream = (f"{JS}.INFO", f"{JS}.STREAM.INFO.*", *per_queue,
                 f"{JS}.CONSUMER.CREATE.{kv}", f"{JS}.CONSUMER.CREATE.{kv}.>",
                 f"{JS}.CONSUMER.INFO.{kv}.>",
                 f"{JS}.CONSUMER.DELETE.{kv}.>", f"{JS}.STREAM.NAMES",
                 f"{JS}.STREAM.MSG.GET.{kv}", f"{JS}.DIRECT.GET.{kv}.>", "$JS.FC.>")  # fmt: skip
    return Permissions(
        # Its runs' events (each checked by its attempt's key), its requests, its queues.
        pub_allow=(
            subjects.EVENTS_SUBJECTS,
            *requests,
            subjects.dead_letter_subject("agent"),
            *jetstream,
        ),
        sub_allow=(
            f"{inbox_prefix(name)}.>",
            subjects.agent_cancel_subject(name),  # requests to it
            subjects.agent_cancel_subject(f"{name}.*"),  # to each replica sharing the credential
            *(subjects.run_subject(queue) for queue in queues),  # the doorbell
        ),
        responds=True,
    )


# --- keys and JWTs ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _new_seed(prefix: int) -> bytes:
    import nacl.signing
    import nkeys

    return bytes(nkeys.encode_seed(nacl.signing.SigningKey.generate().encode(), prefix))


def _public(seed: bytes) -> str:
    import nkeys

    return str(nkeys.from_seed(bytearray(seed)).public_key.decode())


def _sign_jwt(issuer_seed: bytes, subject: str, name: str, nats: dict[str, Any]) -> str:
    import nkeys

    issuer = nkeys.from_seed(bytearray(issuer_seed))
    claims: dict[str, Any] = {
        "jti": "",
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    digest = hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    head = _b64(json.dumps(_HEADER).encode()) + "." + _b64(json.dumps(claims).encode())
    return head + "." + _b64(issuer.sign(head.encode()))


def _creds(jwt: str, seed: bytes) -> str:
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed.decode()}\n"
        "------END USER NKEY SEED------\n"
    )


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


_ACCOUNT_LIMITS = {
    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True,
    "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
}  # fmt: skip


def init(folder: Path) -> list[Path]:
    """Make the operator, the account and a user per role in ``folder`` (refused if it holds
    them already: their keys would change under running processes). Returns the files."""
    keys = folder / "keys"
    if (keys / "account.seed").exists():
        raise UsageError(f"{folder} holds flowbus's NATS identities already")
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    operator, system, account = (_new_seed(p) for p in (112, 0, 0))
    system_id, account_id = _public(system), _public(account)
    operator_jwt = _sign_jwt(operator, _public(operator), "flowbus",
                             {"type": "operator", "system_account": system_id})  # fmt: skip
    system_jwt = _sign_jwt(operator, system_id, "SYS", {"type": "account", "limits": {
        k: v for k, v in _ACCOUNT_LIMITS.items() if "storage" not in k and k not in
        ("streams", "consumer")}})  # fmt: skip
    account_jwt = _sign_jwt(operator, account_id, ACCOUNT,
                            {"type": "account", "limits": _ACCOUNT_LIMITS,
                             "default_permissions": {"pub": {}, "sub": {}}})  # fmt: skip
    _write_secret(keys / "operator.seed", operator.decode() + "\n")
    _write_secret(keys / "account.seed", account.decode() + "\n")
    conf = folder / "auth.conf"
    conf.write_text(
        "# flowbus's NATS identities (flowbus auth init): include this file from the server's\n"
        "# configuration. Users are added without changing it (flowbus auth add-agent).\n"
        f'operator: "{operator_jwt}"\n'
        f'system_account: "{system_id}"\n'
        "resolver: MEMORY\n"
        "resolver_preload: {\n"
        f'  {system_id}: "{system_jwt}"\n'
        f'  {account_id}: "{account_jwt}"\n'
        "}\n"
    )
    written = [conf]
    for role in ROLES:
        written.append(add_user(folder, role, role))
    return written


def add_user(
    folder: Path, role: str, name: str, queues: tuple[str, ...] = (), file: str | None = None
) -> Path:
    """Sign a user ``name`` with ``role``'s permissions; its credentials file
    (``<file or name>.creds``)."""
    import re

    if not re.fullmatch(_NAME, name):
        raise UsageError(f"name {name!r}: use lowercase letters, digits and '-'")
    try:
        account = (folder / "keys" / "account.seed").read_text().strip().encode()
    except FileNotFoundError:
        raise UsageError(f"{folder} has no flowbus NATS identities (flowbus auth init)") from None
    user = _new_seed(160)
    nats = {"type": "user", "subs": -1, "data": -1, "payload": -1,
            **permissions(role, name, queues).claims()}  # fmt: skip
    jwt = _sign_jwt(account, _public(user), name, nats)
    path = folder / f"{file or name}.creds"
    _write_secret(path, _creds(jwt, user))
    return path


def add_agent(folder: Path, name: str, queues: tuple[str, ...]) -> Path:
    """An agent's own credential, allowed the subjects of its name and its queues only."""
    if name in ROLES:
        raise UsageError(f"an agent may not be named {name!r} (a role's file has that name)")
    if name in subjects.RESERVED_AGENT_NAMES:
        raise UsageError(f"an agent may not be named {name!r} (the orchestrator's subjects use it)")
    return add_user(folder, "agent", name, queues, file=f"agent-{name}")


def _user_claims(creds: Path) -> tuple[str, list[str]] | None:
    """The user name and subscribe permissions of a credentials file (None: not readable)."""
    found = read_creds(creds)
    claims = jwt_claims(found[0]) if found is not None else None
    if claims is None:
        return None
    try:
        return str(claims["name"]), list(claims["nats"].get("sub", {}).get("allow", []))
    except (KeyError, AttributeError, TypeError):
        return None


def own_inbox(creds: Path) -> str | None:
    """The inbox prefix a credentials file made by ``flowbus auth`` must use (its user may
    subscribe to that inbox only); None for any other file."""
    found = _user_claims(creds)
    if found is None:
        return None
    prefix = inbox_prefix(found[0])
    return prefix if f"{prefix}.>" in found[1] and ">" not in found[1] else None


def credential_user(creds: Path) -> str | None:
    """The user a credentials file was made for (its JWT's name), else None."""
    found = _user_claims(creds)
    return found[0] if found is not None else None


def credential_actor() -> str | None:
    """``nats:<user>`` of ``$FLOWBUS_NATS_CREDS`` (a file of ``flowbus auth``), else None: the
    actor a service's client names (``engine/actors.py``)."""
    creds = os.environ.get("FLOWBUS_NATS_CREDS")
    user = credential_user(Path(creds)) if creds else None
    return f"nats:{user}" if user else None


def agent_user(creds: Path) -> str | None:
    """The agent a credentials file of ``flowbus auth add-agent`` was made for, else None.
    Agents sharing it (the replicas of one queue's pods) are named ``<agent>.<instance>``."""
    found = _user_claims(creds)
    if found is None:
        return None
    name, allowed = found
    return name if subjects.agent_cancel_subject(name) in allowed else None
