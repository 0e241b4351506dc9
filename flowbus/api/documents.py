"""Documents: named configuration of the kinds the CLI writes through the server when it has a
profile (variables, tag and global concurrency limits, automations, block types).
``/documents/{kind}[/{name}]`` reads, saves (``PUT``, a new version) and deletes one, each body
checked by its kind's model (a 422 otherwise)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowbus.api.common import ERRORS, client_of, store_of
from flowbus.client import ClientError
from flowbus.engine.artifacts import ARTIFACT
from flowbus.engine.automations import AUTOMATION, Automation
from flowbus.engine.blocks import BLOCK, BLOCK_TYPE
from flowbus.engine.documents import delete_document, save_document
from flowbus.engine.errors import FlowbusError
from flowbus.engine.retention import RETENTION, policy_from_days
from flowbus.engine.slot_table import GLOBAL_LIMIT, LIMIT
from flowbus.engine.variables import VARIABLE, VARIABLE_TAGS, check_name
from flowbus.engine.webhooks import WEBHOOK, check_template, read_webhook

router = APIRouter(responses=ERRORS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TagLimit(_Strict):
    limit: int = Field(ge=0)


class GlobalLimit(_Strict):
    limit: int = Field(ge=0)
    active: bool = True
    slot_decay_per_second: float | None = Field(default=None, ge=0)


class BlockType(_Strict):
    schema_: dict[str, Any] = Field(alias="schema")
    secret_fields: list[str]
    class_: str = Field(alias="class")


class DocumentBody(BaseModel):
    """A document's new body."""

    body: Any


def _checked(model: type[BaseModel]) -> Callable[[str, Any], Any]:
    def check(name: str, body: Any) -> Any:
        return model.model_validate(body).model_dump(mode="json", by_alias=True)

    return check


def _variable(name: str, body: Any) -> Any:
    check_name(name)
    return body


def _automation(name: str, body: Any) -> Any:
    automation = Automation.model_validate(body)
    if automation.name != name:
        raise ValueError(f"the automation's name is {automation.name!r}, not {name!r}")
    return automation.model_dump(mode="json")


def _variable_tags(name: str, body: Any) -> Any:
    check_name(name)
    if not isinstance(body, list) or not all(isinstance(tag, str) for tag in body):
        raise ValueError("a variable's tags are a list of strings")
    return body


def _retention(name: str, body: Any) -> Any:
    if not isinstance(body, dict) or set(body) - {"days", "keep_failed_days", "archive"}:
        raise ValueError('a retention is {"days": N or null, "keep_failed_days": M or null, '
                         '"archive": URL or null}')  # fmt: skip
    policy_from_days(body.get("days"), body.get("keep_failed_days"), body.get("archive"))
    return body


def _webhook(name: str, body: Any) -> Any:
    webhook = read_webhook(body)
    if webhook.name != name:
        raise ValueError(f"the webhook's name is {webhook.name!r}, not {name!r}")
    check_template(webhook.template)
    return webhook.model_dump(mode="json")


#: The kinds written through this API, each with what checks a body (blocks: below).
WRITABLE: dict[str, Callable[[str, Any], Any]] = {
    VARIABLE: _variable,
    LIMIT: _checked(TagLimit),
    GLOBAL_LIMIT: _checked(GlobalLimit),
    AUTOMATION: _automation,
    BLOCK_TYPE: _checked(BlockType),
    WEBHOOK: _webhook,
    VARIABLE_TAGS: _variable_tags,
    RETENTION: _retention,
}
READABLE = {*WRITABLE, BLOCK, ARTIFACT}


def _kind(kind: str, kinds: set[str] | dict[str, Any]) -> None:
    if kind not in kinds:
        raise HTTPException(404, f"no document kind {kind!r} here (kinds: {sorted(kinds)})")


async def _changed(request: Request, kind: str) -> None:
    """An automation changed: the running engine reads them again before the reply."""
    if kind == AUTOMATION:
        await client_of(request).automations_changed()


@router.get("/documents/{kind}", tags=["documents"])
async def list_documents(request: Request, kind: str) -> list[dict[str, Any]]:
    """Every document of a kind (blocks as stored: secret fields encrypted)."""
    _kind(kind, READABLE)
    return [d.to_dict() for d in await store_of(request).list_documents(kind)]


@router.get("/documents/{kind}/{name:path}", tags=["documents"])
async def get_document(request: Request, kind: str, name: str) -> dict[str, Any]:
    _kind(kind, READABLE)
    found = await store_of(request).get_document(kind, name)
    if found is None:
        raise HTTPException(404, f"no {kind} named {name}")
    return found.to_dict()


@router.put("/documents/{kind}/{name:path}", tags=["documents"])
async def put_document(
    request: Request, kind: str, name: str, document: DocumentBody
) -> dict[str, Any]:
    """Save a document's next version; its body checked by its kind's model."""
    _kind(kind, WRITABLE)
    try:
        body = WRITABLE[kind](name, document.body)
    except (ValidationError, ValueError, FlowbusError) as exc:
        raise ClientError("invalid_document", f"not a valid {kind}: {exc}") from exc
    saved = await save_document(store_of(request), kind, name, body)
    await _changed(request, kind)
    return saved.to_dict()


@router.delete("/documents/{kind}/{name:path}", tags=["documents"])
async def remove_document(request: Request, kind: str, name: str) -> dict[str, Any]:
    _kind(kind, READABLE)
    if not await delete_document(store_of(request), kind, name):
        raise HTTPException(404, f"no {kind} named {name}")
    await _changed(request, kind)
    return {"kind": kind, "name": name, "deleted": True}


__all__ = ["router"]
