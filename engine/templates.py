"""Templates in automations, deployment triggers and webhooks: Jinja, sandboxed, as Prefect
renders them, so a Prefect user's ``"{{ event.payload.x }}"`` or webhook template works as is.

A string that is one whole expression (``"{{ event.payload.rows }}"``) keeps the value's type;
any other string is rendered as text. A name or key that is not there gives ``None`` (text:
nothing), never an error. Templates come from people who may deploy, not from the wire, and
still run in Jinja's sandbox: no attribute of Python's internals is reachable from one.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, Undefined
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


class _Environment(ImmutableSandboxedEnvironment):
    """Jinja's sandbox, reading a mapping's key before an attribute of the same name: an
    event's ``payload.items`` is its payload's ``items``, not the dict's method."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


_ENVIRONMENT = _Environment(
    autoescape=False, keep_trailing_newline=True, undefined=ChainableUndefined
)
_STRICT = _Environment(autoescape=False, undefined=StrictUndefined)
_WHOLE = re.compile(r"^\{\{(?P<expression>(?:(?!\}\}).)*)\}\}$", re.DOTALL)
_RESOURCE_ID_KEYS = ("prefect.resource.id", "flowbus.resource.id")


class ResourceRef(str):
    """An event's resource in a template: its id as text (``{{ event.resource }}``, flowbus's
    spelling), and a Prefect resource too: ``event.resource.id``, ``event.resource.name`` and
    ``event.resource['label']`` read its id and labels."""

    labels: dict[str, str]

    def __new__(cls, resource_id: str | None, labels: dict[str, str]) -> ResourceRef:
        made = super().__new__(cls, resource_id or "")
        made.labels = dict(labels)
        return made

    @property
    def id(self) -> str:
        return str(self)

    @property
    def name(self) -> str | None:
        return self.labels.get("prefect.resource.name") or self.labels.get("name")

    def get(self, key: str, default: Any = None) -> Any:
        if key in _RESOURCE_ID_KEYS:
            return str(self)
        return self.labels.get(key, default)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self.get(key)
        return str(self)[key]


def event_context(event: dict[str, Any]) -> dict[str, Any]:
    """An event as templates see it: flowbus's fields (``type``, ``resource``, ``labels``,
    ``payload``) and Prefect's names for them (``event.event``, ``event.resource.id``)."""
    labels = event.get("labels") or {}
    return {
        **event,
        "event": event.get("type"),
        "resource": ResourceRef(event.get("resource"), labels),
    }


def plain(value: Any) -> Any:
    """``value`` with template-only types made JSON's own again."""
    if isinstance(value, Undefined):
        return None
    if isinstance(value, ResourceRef):
        return str(value)
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def render_text(template: str, context: dict[str, Any], strict: bool = False) -> str:
    """``template`` rendered as text. ``strict``: a missing name is an error
    (``TemplateError``), as a webhook's template wants to say what it lacked."""
    environment = _STRICT if strict else _ENVIRONMENT
    return environment.from_string(template).render(**context)


def check_syntax(template: str) -> None:
    """Raise ``TemplateError`` if Jinja cannot parse ``template``."""
    _ENVIRONMENT.parse(template)


def render(template: Any, context: dict[str, Any]) -> Any:
    """Fill the templates throughout a JSON-like value from ``context``."""
    if isinstance(template, str):
        if "{{" not in template and "{%" not in template:
            return template
        whole = _WHOLE.match(template.strip())
        if whole:
            expression = _ENVIRONMENT.compile_expression(whole.group("expression"))
            return plain(expression(**context))
        return render_text(template, context)
    if isinstance(template, dict):
        return {key: render(value, context) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, context) for value in template]
    return template


__all__ = [
    "ResourceRef",
    "TemplateError",
    "check_syntax",
    "event_context",
    "plain",
    "render",
    "render_text",
]
