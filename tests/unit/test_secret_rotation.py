"""Rotating the secret key: a new key first, every stored secret encrypted with it, the old
key dropped; nothing is lost on the way."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from flowbus.engine.blocks import BLOCK, register_built_in, rotate_secrets, save_block_data
from flowbus.engine.errors import UsageError
from flowbus.engine.secrets import decrypt
from flowbus.engine.store.memory import MemoryEventStore


async def stored_token(store: MemoryEventStore) -> str:
    document = await store.get_document(BLOCK, "secret/api")
    assert document is not None
    return str(document.body["data"]["value"])


async def test_rotate_key_moves_every_secret_to_the_new_key(
    flowbus_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    store = MemoryEventStore()
    monkeypatch.setenv("FLOWBUS_SECRET_KEY", old)
    await register_built_in(store)
    await save_block_data(store, "secret", "api", {"value": "s3cr3t-value"})
    before = await stored_token(store)

    monkeypatch.setenv("FLOWBUS_SECRET_KEY", f"{new},{old}")
    assert decrypt(before) == "s3cr3t-value"  # the old key still reads
    assert await rotate_secrets(store) == (1, 1)
    after = await stored_token(store)
    assert after != before

    monkeypatch.setenv("FLOWBUS_SECRET_KEY", new)  # the old key dropped
    assert decrypt(after) == "s3cr3t-value"
    with pytest.raises(UsageError, match="another key"):
        decrypt(before)
    monkeypatch.setenv("FLOWBUS_SECRET_KEY", old)
    with pytest.raises(UsageError):
        decrypt(after)


async def test_rotation_without_the_old_key_refuses_and_changes_nothing(
    flowbus_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryEventStore()
    monkeypatch.setenv("FLOWBUS_SECRET_KEY", Fernet.generate_key().decode())
    await register_built_in(store)
    await save_block_data(store, "secret", "api", {"value": "s3cr3t-value"})
    before = await stored_token(store)
    monkeypatch.setenv("FLOWBUS_SECRET_KEY", Fernet.generate_key().decode())
    with pytest.raises(UsageError, match="any key"):
        await rotate_secrets(store)
    assert await stored_token(store) == before
