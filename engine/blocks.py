"""Blocks: typed, reusable configuration. A block type is a pydantic model registered by name;
a block is a named, validated instance of one, kept in the store (``MyBlock.load("name")``).

Fields typed ``SecretStr`` are secret: encrypted at rest (``flowbus.engine.secrets``), shown as
``********`` by the CLI, the API and the UI, and redacted from a run's events once loaded.

    class Warehouse(Block):
        dsn: str
        password: SecretStr

    Warehouse(dsn="postgresql://etl@db/warehouse", password="...").save("prod")
    Warehouse.load("prod").password.get_secret_value()
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, JsonValue, SecretStr, model_validator

from flowbus.engine.documents import delete_document, save_document, using_store
from flowbus.engine.errors import ObjectNotFound, UsageError
from flowbus.engine.loops import run_sync
from flowbus.engine.run_documents import run_documents_var
from flowbus.engine.run_logging import install_print_capture
from flowbus.engine.secrets import MASK, decrypt, encrypt, remember
from flowbus.engine.store import DocumentView, EventStore

BLOCK = "block"
BLOCK_TYPE = "block_type"
_REGISTRY: dict[str, type[Block]] = {}
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


def _type_name(cls: type) -> str:
    """``NatsConnection`` -> ``nats-connection``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", cls.__name__).lower()


def secret_fields(model: type[BaseModel]) -> list[str]:
    return [name for name, info in model.model_fields.items() if _is_secret(info.annotation)]


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return SecretStr in getattr(annotation, "__args__", ())  # SecretStr | None


def redacted(body: dict[str, Any]) -> dict[str, Any]:
    """A stored block's body with its secret fields masked (what leaves the store)."""
    data = dict(body.get("data", {}))
    for name in body.get("secret_fields", []):
        if data.get(name) is not None:
            data[name] = MASK
    return {**body, "data": data}


def decrypted(body: dict[str, Any]) -> dict[str, Any]:
    """A stored block's data with its secret fields decrypted: ``{"data", "secret_fields"}``
    (what ``Block.load`` validates; the orchestrator hands it to a run that may load it)."""
    data = dict(body.get("data", {}))
    secrets = list(body.get("secret_fields", []))
    for field in secrets:
        if data.get(field) is not None:
            data[field] = decrypt(data[field])
    return {"data": data, "secret_fields": secrets}


def shown_block(document: DocumentView) -> dict[str, Any]:
    """A stored block as the CLI and the API show it, secret fields masked."""
    body = redacted(document.body)
    return {"type": body["type"], "name": document.name.split("/", 1)[1], "data": body["data"],
            "secret_fields": body["secret_fields"], "created": document.created,
            "updated": document.updated, "version": document.version}  # fmt: skip


class Block(BaseModel):
    """Base of every block type; subclasses are registered under ``block_type_name`` (by
    default the class name in kebab case)."""

    model_config = ConfigDict(extra="forbid")
    block_type_name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("block_type_name"):
            cls.block_type_name = _type_name(cls)
        _REGISTRY[cls.block_type_name] = cls

    # --- recording ---------------------------------------------------------------------------

    def _stored_data(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for name in secret_fields(type(self)):
            value = getattr(self, name)
            data[name] = None if value is None else encrypt(value.get_secret_value())
        return data

    async def asave(self, name: str, store: EventStore | None = None) -> None:
        """Record this block as ``name`` (a new version if it exists), and its type."""
        _check_name(name)
        if store is None:
            _refuse_on_agent()
        kind = type(self)
        body = {"type": kind.block_type_name, "data": self._stored_data(),
                "secret_fields": secret_fields(kind)}  # fmt: skip

        async def save(opened: EventStore) -> None:
            await register_type(kind, opened)
            await save_document(opened, BLOCK, f"{kind.block_type_name}/{name}", body)

        await using_store(store, save)

    def save(self, name: str, overwrite: bool = False) -> None:
        """Record this block as ``name``; an existing one only with ``overwrite=True``
        (otherwise ``ValueError``, as in Prefect)."""
        _refuse_on_agent()
        run_sync(self._save_checked(name, overwrite))

    async def _save_checked(self, name: str, overwrite: bool) -> None:
        async def save(opened: EventStore) -> None:
            key = f"{type(self).block_type_name}/{name}"
            if not overwrite and await opened.get_document(BLOCK, key) is not None:
                raise ValueError(
                    f"Block document with name {name!r} already exists; "
                    "use overwrite=True to replace it"
                )
            await self.asave(name, opened)

        await using_store(None, save)

    @classmethod
    async def aload(cls, name: str, store: EventStore | None = None) -> Any:
        """The block saved as ``name``, its secrets decrypted (and redacted from run events)."""
        key = f"{cls.block_type_name}/{name}"
        source = run_documents_var.get() if store is None else None
        if source is not None:  # a run on an agent: the orchestrator reads and decrypts it
            given = await source.block(key)
            if given is None:
                raise ObjectNotFound(f"Unable to find block document named {name!r} for block "
                                     f"type {cls.block_type_name!r}")  # fmt: skip
            data = dict(given["data"])
            for field in given.get("secret_fields", []):
                if isinstance(data.get(field), str):
                    remember(data[field])  # masked in this process's events and output
                    install_print_capture()
            return cls.model_validate(data)

        async def read(opened: EventStore) -> DocumentView | None:
            return await opened.get_document(BLOCK, key)

        found = await using_store(store, read)
        if found is None:
            raise ObjectNotFound(f"Unable to find block document named {name!r} for block "
                                 f"type {cls.block_type_name!r}")  # fmt: skip
        opened = decrypted(found.body)
        if any(opened["data"].get(f) is not None for f in opened["secret_fields"]):
            install_print_capture()  # print() then masks it on the console too
        return cls.model_validate(opened["data"])

    @classmethod
    def load(cls, name: str) -> Any:
        return run_sync(cls.aload(name))


def _refuse_on_agent() -> None:
    if run_documents_var.get() is not None:
        # An agent's run holds no secret key and no store: blocks are saved by people.
        raise UsageError(
            "a flow run on an agent cannot save blocks: save them with `flowbus block set`, "
            "the API, or a script that can reach the store"
        )


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise UsageError(f"block name {name!r}: use lowercase letters, digits and '-'")


async def register_type(kind: type[Block], store: EventStore) -> DocumentView:
    """Record a block type: its JSON schema and secret fields (what ``flowbus block set``
    validates against), and where its class lives."""
    body = {
        "schema": kind.model_json_schema(),
        "secret_fields": secret_fields(kind),
        "class": f"{kind.__module__}:{kind.__qualname__}",
    }
    current = await store.get_document(BLOCK_TYPE, kind.block_type_name)
    if current is not None and current.body == body:
        return current
    return await save_document(store, BLOCK_TYPE, kind.block_type_name, body)


async def save_block_data(
    store: EventStore, type_name: str, name: str, data: dict[str, Any]
) -> DocumentView:
    """Record a block of a registered type from plain data (the CLI's ``block set``): checked
    against the type's schema, secret fields encrypted."""
    from flowbus.engine.schema_model import model_from_schema

    _check_name(name)
    kind = await store.get_document(BLOCK_TYPE, type_name)
    if kind is None:
        names = [d.name for d in await store.list_documents(BLOCK_TYPE)]
        raise UsageError(f"no block type {type_name!r} (registered: {', '.join(names) or 'none'})")
    secrets = kind.body["secret_fields"]
    # Only a class this process defined already: the type document's "class" is data anyone
    # with the API may write, and importing the module it names would run that module.
    cls = _REGISTRY.get(type_name)
    if cls is not None:  # the class itself: every validator of it applies
        checked = cls.model_validate(data)._stored_data()
    else:  # a type registered from a file this process cannot import: its JSON schema
        checked = (
            model_from_schema(kind.body["schema"]).model_validate(data).model_dump(mode="json")
        )
        for field in secrets:
            if data.get(field) is not None:
                checked[field] = encrypt(str(data[field]))
    body = {"type": type_name, "data": checked, "secret_fields": secrets}
    return await save_document(store, BLOCK, f"{type_name}/{name}", body)


async def rotate_secrets(store: EventStore) -> tuple[int, int]:
    """Encrypt every stored block secret again with the first key of ``FLOWBUS_SECRET_KEY``;
    returns (secrets, blocks) rotated. Run it after putting a new key first; the old one can
    go once it is done."""
    from flowbus.engine.secrets import PREFIX, rotate

    values = blocks = 0
    for document in await store.list_documents(BLOCK):
        body = document.body
        data = dict(body.get("data") or {})
        changed = 0
        for field in body.get("secret_fields") or []:
            token = data.get(field)
            if isinstance(token, str) and token.startswith(PREFIX):
                data[field] = rotate(token)
                changed += 1
        if changed:
            await save_document(store, BLOCK, document.name, {**body, "data": data})
            values, blocks = values + changed, blocks + 1
    return values, blocks


async def delete_block(store: EventStore, type_name: str, name: str) -> bool:
    return await delete_document(store, BLOCK, f"{type_name}/{name}")


# --- built-in block types --------------------------------------------------------------------


class Secret(Block):
    """One secret value: ``Secret.load("api-key").get()``. A dict or list value is kept as
    encrypted JSON and ``get()`` gives it back as it was."""

    value: SecretStr
    #: The value is JSON (a dict or a list was given).
    json_value: bool = False

    @model_validator(mode="before")
    @classmethod
    def _structured(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("value"), dict | list):
            data = {**data, "value": orjson.dumps(data["value"]).decode(), "json_value": True}
        return data

    def get(self) -> Any:
        raw = self.value.get_secret_value()
        return orjson.loads(raw) if self.json_value else raw

    def _stored_data(self) -> dict[str, Any]:
        data = super()._stored_data()
        if not self.json_value:  # a plain secret is stored (and shown) as it always was
            del data["json_value"]
        return data


class String(Block):
    """A string value."""

    value: str


class DateTime(Block):
    """A date and time (ISO 8601 when given as text)."""

    value: datetime


class JSON(Block):
    """Any JSON value."""

    block_type_name: ClassVar[str] = "json"
    value: JsonValue


class Webhook(Block):
    """An HTTP endpoint to call (automations POST to it); ``token`` goes in an Authorization
    header."""

    url: str = Field(pattern=r"^https?://")
    method: str = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    token: SecretStr | None = None


class NatsConnection(Block):
    """A NATS server to connect to, with optional credentials."""

    servers: list[str] = Field(min_length=1)
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None


BUILT_IN = (Secret, JSON, String, DateTime, Webhook, NatsConnection)


async def register_built_in(store: EventStore) -> None:
    for kind in BUILT_IN:
        await register_type(kind, store)
