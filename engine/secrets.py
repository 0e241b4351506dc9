"""Secret values: encrypted at rest with Fernet (from ``cryptography``), redacted everywhere else.

The key is ``$FLOWBUS_SECRET_KEY`` (a Fernet key: ``flowbus block key`` prints a new one), else
the file ``$FLOWBUS_HOME/secret.key``, created on first use with mode 0600. Every process that
reads secrets (agents running flows that load blocks) needs the same key.

Keys rotate: ``FLOWBUS_SECRET_KEY=NEW,OLD`` encrypts with NEW and still reads what OLD
encrypted; ``flowbus block rotate-key`` then encrypts every stored secret with NEW
(``rotate``), after which OLD can be dropped.

A secret value loaded in this process is remembered so that run events (log lines, state
messages, tracebacks, results) and console lines show ``********`` in its place.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from flowbus.engine import settings
from flowbus.engine.errors import UsageError

#: What a redacted secret looks like, everywhere.
MASK = "********"
#: Encrypted values start with this, so they are never mistaken for plain text.
PREFIX = "fernet:"

_known: set[str] = set()
_known_lock = threading.Lock()


def key_file() -> Path:
    return settings.home() / "secret.key"


def _key() -> bytes:
    # cryptography is imported when a secret is used: `import flowbus` stays light.
    from cryptography.fernet import Fernet

    configured = os.environ.get("FLOWBUS_SECRET_KEY")
    if configured:
        return configured.encode()
    path = key_file()
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: of two processes creating it at once, one writes and both read its key
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "wb") as out:
        out.write(Fernet.generate_key())
    return path.read_bytes().strip()


def _fernet() -> Any:
    from cryptography.fernet import Fernet, MultiFernet

    try:
        keys = [part.strip() for part in _key().split(b",") if part.strip()]
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise UsageError(
            "FLOWBUS_SECRET_KEY (or secret.key) is not a Fernet key: 32 url-safe base64 bytes"
        ) from exc


def encrypt(value: str) -> str:
    return PREFIX + _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    if not token.startswith(PREFIX):
        raise UsageError("not an encrypted value")
    from cryptography.fernet import InvalidToken

    try:
        value = _fernet().decrypt(token.removeprefix(PREFIX).encode()).decode()
    except InvalidToken as exc:
        raise UsageError(
            "cannot decrypt a secret: this process has another key than the one that "
            "encrypted it (set FLOWBUS_SECRET_KEY to the same key everywhere)"
        ) from exc
    remember(value)
    return value


def rotate(token: str) -> str:
    """``token`` encrypted again with the first key (its value unchanged, never remembered)."""
    if not token.startswith(PREFIX):
        raise UsageError("not an encrypted value")
    from cryptography.fernet import InvalidToken

    try:
        return PREFIX + _fernet().rotate(token.removeprefix(PREFIX).encode()).decode()
    except InvalidToken as exc:
        raise UsageError("cannot decrypt a secret with any key of FLOWBUS_SECRET_KEY") from exc


def remember(value: str) -> None:
    """Redact ``value`` from run events and console lines of this process from now on."""
    if len(value) >= 4:  # shorter values would mask ordinary text
        with _known_lock:
            _known.add(value)


def known_secrets() -> bool:
    """Whether this process has loaded any secret (so output should be masked)."""
    return bool(_known)


def redact(text: str) -> str:
    """``text`` with every remembered secret replaced by the mask."""
    if not _known:
        return text
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrub(value: Any) -> Any:
    """``redact`` applied to every string inside a JSON-like value (nothing to do, no copy,
    while no secret is known)."""
    if not _known:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value
