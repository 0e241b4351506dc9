"""Reaching the PostgreSQL that integration tests use: ``$FLOWBUS_TEST_POSTGRES_URL``, default
the local server (127.0.0.1:5432, database ``test``, trust auth). Each test gets a schema of its
own, dropped afterwards. Without a reachable server the tests skip, unless ``CI`` is set: then
they fail."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    return os.environ.get("FLOWBUS_TEST_POSTGRES_URL", DEFAULT_URL)


@asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """A store URL for a new, empty schema; the schema is dropped on exit."""
    import asyncpg

    url = postgres_url()
    try:
        admin = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {url}: {exc}")
    schema = f"flowbus_test_{uuid.uuid4().hex[:12]}"
    try:
        separator = "&" if "?" in url else "?"
        yield f"{url}{separator}schema={schema}"
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
