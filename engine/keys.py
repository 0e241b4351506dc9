"""Secret keys flowbus makes and keeps itself: each a list (the first signs, every one verifies,
so a key is rotated by putting a new one first and dropping the old once nothing it signed is
read any more), from an environment variable or, failing that, a file under
``$FLOWBUS_HOME/keys`` made on first use (mode 0600).

Processes on one machine share the file; several hosts share a key by setting the variable to
the same value on each.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from flowbus.engine import settings
from flowbus.engine.errors import FlowbusError

#: The smallest key accepted, in bytes (as hex text: twice as many characters).
MIN_KEY_BYTES = 16


def new_key() -> str:
    """A new random key, as the hex text the key variables take."""
    return secrets.token_hex(32)


@dataclass(frozen=True)
class KeyRing:
    """One kind of key: the variable that lists them, and the file made when it is unset."""

    variable: str
    file_name: str

    def file(self) -> Path:
        return settings.home() / "keys" / self.file_name

    def keys(self, create: bool = False) -> list[bytes]:
        """The keys, the signing one first; ``create``: make the key file when there is no key
        yet (a writer does; a reader never, as a key of its own would verify nothing)."""
        configured = os.environ.get(self.variable)
        if configured:
            keys = _parse(configured, self.variable)
            if keys:
                return keys
        path = self.file()
        try:
            return _parse(path.read_text(), str(path))
        except FileNotFoundError:
            if not create:
                return []
        return _parse(_make_file(path), str(path))


def _parse(text: str, source: str) -> list[bytes]:
    keys = []
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            key = bytes.fromhex(part)
        except ValueError:
            raise FlowbusError(f"{source}: a key is hex text (64 characters)") from None
        if len(key) < MIN_KEY_BYTES:
            raise FlowbusError(f"{source}: a key has at least {MIN_KEY_BYTES} bytes")
        keys.append(key)
    return keys


def _make_file(path: Path) -> str:
    """Write a new key to ``path`` unless another process got there first; the key in it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(new_key() + "\n")
        with contextlib.suppress(FileExistsError):  # a racing process made it first: theirs wins
            os.link(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path.read_text()


#: Seals on pickled results (``sealing.py``): every process that writes or reads them.
RESULT_KEYS = KeyRing("FLOWBUS_RESULT_KEYS", "results.key")
#: Attempt keys of claims (``broker/fencing.py``): orchestrators only.
FENCE_KEYS = KeyRing("FLOWBUS_FENCE_KEYS", "fence.key")
#: Signs the web UI's session cookies (``flowbus/api/auth.py``): every API server; several
#: behind one address share it, so a session made by one is good on the others.
SESSION_KEYS = KeyRing("FLOWBUS_SESSION_KEYS", "session.key")
