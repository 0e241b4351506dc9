"""Variables: plain named JSON values kept in the store, for flows and operators alike.

from flowbus import variables
region = variables.get("region", default="eu-west-1")
await variables.aset("last_batch", {"rows": 150})
"""

from __future__ import annotations

import re
from typing import Any

from flowbus.engine.documents import delete_document, save_document, using_store
from flowbus.engine.errors import UsageError
from flowbus.engine.loops import run_sync
from flowbus.engine.run_documents import run_documents_var
from flowbus.engine.store import EventStore

VARIABLE = "variable"
#: A variable\'s tags: a document of their own, so a variable\'s body stays its value.
VARIABLE_TAGS = "variable_tags"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
_MISSING: Any = object()


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UsageError(f"variable name {name!r}: use letters, digits, '_', '.', '-'")
    return name


async def aget(name: str, default: Any = _MISSING, store: EventStore | None = None) -> Any:
    """A variable's value; ``default`` when it is not set (without one: ``UsageError``)."""
    source = run_documents_var.get() if store is None else None
    if source is not None:  # a run on an agent: the orchestrator reads it
        is_set, value = await source.variable(check_name(name))
        if is_set:
            return value
        if default is _MISSING:
            raise UsageError(f"no variable named {name!r}")
        return default

    async def read(opened: EventStore) -> Any:
        return await opened.get_document(VARIABLE, check_name(name))

    found = await using_store(store, read)
    if found is not None:
        return found.body
    if default is _MISSING:
        raise UsageError(f"no variable named {name!r}")
    return default


async def aset(
    name: str, value: Any, store: EventStore | None = None, tags: list[str] | None = None
) -> None:
    """Set a variable to a JSON value (a new version of it); ``tags`` (Prefect's) are kept
    beside it (None: its tags stay as they were)."""
    source = run_documents_var.get() if store is None else None
    if source is not None:
        await source.set_variable(check_name(name), value, tags)
        return

    async def write(opened: EventStore) -> None:
        await save_document(opened, VARIABLE, check_name(name), value)
        if tags is not None:
            await save_document(opened, VARIABLE_TAGS, name, sorted({str(t) for t in tags}))

    await using_store(store, write)


async def tags_of(store: EventStore) -> dict[str, list[str]]:
    """Every variable's tags, by name (a variable without any is absent)."""
    return {d.name: list(d.body) for d in await store.list_documents(VARIABLE_TAGS) if d.body}


async def aunset(name: str, store: EventStore | None = None) -> bool:
    source = run_documents_var.get() if store is None else None
    if source is not None:
        return await source.unset_variable(check_name(name))

    async def remove(opened: EventStore) -> bool:
        await delete_document(opened, VARIABLE_TAGS, check_name(name))
        return await delete_document(opened, VARIABLE, name)

    result: bool = await using_store(store, remove)
    return result


def get(name: str, default: Any = _MISSING) -> Any:
    return run_sync(aget(name, default))


def set(name: str, value: Any) -> None:
    run_sync(aset(name, value))


def unset(name: str) -> bool:
    result: bool = run_sync(aunset(name))
    return result
