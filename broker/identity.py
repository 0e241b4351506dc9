"""Who sent a request, proven by its NATS credential: the ``actor`` the orchestrator records.

A client under a credential of ``flowbus auth`` signs each request it sends: the headers carry
its user JWT (``Flowbus-Identity``) and an ed25519 signature, by the credential's seed, of the
subject and the body (``Flowbus-Signature``). The orchestrator checks that the JWT was signed by
its own account and the request by that JWT's user; then the actor is ``nats:<user>``, whatever
the request says. The orchestrator's own credential (the API acting for its token holders) may
name the actor. A request without a valid signature keeps the actor it names: the word of
whoever holds a credential allowed to send it (clients in other languages may sign the same
way: docs/protocol.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

IDENTITY_HEADER = "Flowbus-Identity"
SIGNATURE_HEADER = "Flowbus-Signature"
#: The user whose requests may name another actor (the API, in the orchestrator's process).
DELEGATE = "orchestrator"


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw_public_key(public: str) -> bytes:
    """The 32 bytes of an nkey public key (base32: a prefix byte, the key, a CRC16)."""
    decoded = base64.b32decode(public + "=" * (-len(public) % 8))
    if len(decoded) != 35:
        raise ValueError("not an nkey public key")
    return decoded[1:-2]


def _verify(public: str, data: bytes, signature: bytes) -> bool:
    import nacl.exceptions
    import nacl.signing

    try:
        nacl.signing.VerifyKey(_raw_public_key(public)).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def _signed(subject: str, body: bytes) -> bytes:
    return hashlib.sha256(subject.encode() + b"\n" + body).digest()


def read_creds(path: Path) -> tuple[str, bytes] | None:
    """(user JWT, seed) of a credentials file, or None."""
    try:
        text = path.read_text()
        jwt = text.split("-----BEGIN NATS USER JWT-----", 1)[1].split("---", 1)[0].strip()
        seed = text.split("-----BEGIN USER NKEY SEED-----", 1)[1].split("---", 1)[0].strip()
    except (OSError, IndexError):
        return None
    return jwt, seed.encode()


def jwt_claims(jwt: str) -> dict[str, Any] | None:
    try:
        claims: dict[str, Any] = json.loads(_unb64(jwt.split(".")[1]))
    except (IndexError, ValueError):
        return None
    return claims


class Signer:
    """Signs a client's requests with its credential (``$FLOWBUS_NATS_CREDS``)."""

    def __init__(self, jwt: str, seed: bytes) -> None:
        import nkeys

        self.jwt = jwt
        self._key = nkeys.from_seed(bytearray(seed))

    @classmethod
    def from_env(cls) -> Signer | None:
        creds = os.environ.get("FLOWBUS_NATS_CREDS")
        found = read_creds(Path(creds)) if creds else None
        return cls(*found) if found is not None else None

    def headers(self, subject: str, body: bytes) -> dict[str, str]:
        signature = self._key.sign(_signed(subject, body))
        return {IDENTITY_HEADER: self.jwt,
                SIGNATURE_HEADER: base64.urlsafe_b64encode(signature).decode()}  # fmt: skip


class IdentityChecker:
    """The orchestrator's side: the user that provably sent a request, if any."""

    def __init__(self, account: str | None) -> None:
        #: The account that signs flowbus's users (None: no identities to check).
        self.account = account
        self._users: dict[str, tuple[str, str] | None] = {}

    @classmethod
    def from_env(cls) -> IdentityChecker:
        """The account of this process's own credential (``$FLOWBUS_NATS_CREDS``)."""
        creds = os.environ.get("FLOWBUS_NATS_CREDS")
        found = read_creds(Path(creds)) if creds else None
        claims = jwt_claims(found[0]) if found is not None else None
        return cls(str(claims["iss"]) if claims and "iss" in claims else None)

    def sender(self, subject: str, body: bytes, headers: Mapping[str, str] | None) -> str | None:
        """The name of the user whose credential signed this request, or None."""
        if self.account is None or not headers:
            return None
        jwt, signature = headers.get(IDENTITY_HEADER), headers.get(SIGNATURE_HEADER)
        if not jwt or not signature:
            return None
        user = self._user_of(jwt, self.account)
        if user is None:
            return None
        try:
            request_signature = _unb64(signature)
        except ValueError:
            return None
        return user[1] if _verify(user[0], _signed(subject, body), request_signature) else None

    def _user_of(self, jwt: str, account: str) -> tuple[str, str] | None:
        """(public key, name) of a user JWT our account signed; remembered, as a client sends
        the same JWT with every request."""
        if jwt in self._users:
            return self._users[jwt]
        found: tuple[str, str] | None = None
        parts, claims = jwt.split("."), jwt_claims(jwt)
        if len(parts) == 3 and claims is not None and claims.get("iss") == account:
            try:
                signature = _unb64(parts[2])
            except ValueError:
                signature = b""
            name = str(claims.get("name", ""))
            if name and _verify(account, f"{parts[0]}.{parts[1]}".encode(), signature):
                found = (str(claims.get("sub", "")), name)
        if len(self._users) > 4096:  # a cache, not a record
            self._users.clear()
        self._users[jwt] = found
        return found


def actor_of(declared: str | None, sender: str | None) -> str | None:
    """The actor to record: a proven sender's (``nats:<user>``), unless it is the
    orchestrator's credential acting for someone it names; else what the request says."""
    if sender is None:
        return declared
    if sender == DELEGATE:
        return declared or f"nats:{sender}"
    return f"nats:{sender}"


__all__ = ["IdentityChecker", "Signer", "actor_of"]
