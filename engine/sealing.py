"""Sealed blobs: pickled bytes flowbus wrote, signed so that no reader unpickles anything else.

Unpickling runs code, so a result file, a cache entry or a transaction record is unpickled only
when its bytes carry an HMAC-SHA256 made with a result key: bytes from anywhere else (a forged
``ref``, a file planted in shared storage, a file changed after it was written) are refused
before ``pickle`` sees them.

A sealed blob is ``MAGIC + tag + payload`` where ``tag = HMAC-SHA256(key, MAGIC + payload)``.

The keys: ``$FLOWBUS_RESULT_KEYS``, comma-separated (the first signs, every one verifies, so a
key is rotated by putting the new one first and dropping the old one once nothing it signed is
read any more), else the key file ``$FLOWBUS_HOME/keys/results.key``, made on the first write
(mode 0600). Several hosts that read each other's results share one key: set
``FLOWBUS_RESULT_KEYS`` on each (``python -c "import secrets; print(secrets.token_hex(32))"``
makes one).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from flowbus.engine.errors import FlowbusError
from flowbus.engine.keys import RESULT_KEYS, new_key

__all__ = ["MAGIC", "NoResultKey", "UnsealError", "is_sealed", "key_file", "new_key",
           "result_keys", "seal", "unseal"]  # fmt: skip

MAGIC = b"flowbus-sealed-1\n"
_TAG = hashlib.sha256().digest_size


class UnsealError(FlowbusError):
    """Bytes that flowbus cannot prove it wrote: never unpickled."""


class NoResultKey(UnsealError):
    """This process has no result key, so it cannot check (and does not read) pickled bytes."""


def result_keys(create: bool = False) -> list[bytes]:
    """The result keys, the signing key first; ``create``: make the key file when there is no
    key yet (writers do; readers never, as a key of their own would verify nothing)."""
    return RESULT_KEYS.keys(create)


def key_file() -> Path:
    return RESULT_KEYS.file()


def _tag(key: bytes, payload: bytes) -> bytes:
    mac = hmac.new(key, MAGIC, hashlib.sha256)
    mac.update(payload)
    return mac.digest()


def seal(payload: bytes, keys: list[bytes] | None = None) -> bytes:
    """``payload`` signed with the signing key (made if there is none)."""
    key = (keys or result_keys(create=True))[0]
    return MAGIC + _tag(key, payload) + payload


def is_sealed(blob: bytes) -> bool:
    return blob.startswith(MAGIC)


def unseal(blob: bytes, keys: list[bytes] | None = None, what: str = "blob") -> bytes:
    """The payload of a sealed ``blob`` whose tag one of the keys made; ``UnsealError`` (or
    ``NoResultKey``) otherwise."""
    if not blob.startswith(MAGIC):
        raise UnsealError(f"{what} is not sealed by flowbus: refused, not unpickled")
    keys = result_keys() if keys is None else keys
    if not keys:
        raise NoResultKey(
            f"{what} cannot be checked: no result key here (set FLOWBUS_RESULT_KEYS to the key "
            "of the hosts that wrote it)"
        )
    start = len(MAGIC)
    tag, payload = blob[start : start + _TAG], blob[start + _TAG :]
    if any(hmac.compare_digest(tag, _tag(key, payload)) for key in keys):
        return payload
    raise UnsealError(
        f"{what} has a signature no result key here made (forged, changed, or written with "
        "another key): refused, not unpickled"
    )
