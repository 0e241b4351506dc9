"""Validating parameters where the flow's code is not at hand: a pydantic model built from the
parameters' JSON schema (the one a deployment records).

The orchestrator checks a submission with it, so bad parameters get pydantic's own message
before anything is queued. It covers what ``flow.parameters_schema()`` produces (builtin types,
lists, dicts, optionals and unions, enums, nested models through ``$ref``, date/time formats);
a construct it does not know accepts any value, and the agent validates again against the real
signature when it runs the flow.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

_FORMATS: dict[str, Any] = {
    "date": datetime.date,
    "date-time": datetime.datetime,
    "time": datetime.time,
    "uuid": uuid.UUID,
}
_SCALARS: dict[str, Any] = {
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
}


class _Builder:
    def __init__(self, root: dict[str, Any]) -> None:
        self.defs: dict[str, Any] = root.get("$defs") or root.get("definitions") or {}
        self.models: dict[str, Any] = {}

    def type_of(self, schema: Any) -> Any:
        if not isinstance(schema, dict) or not schema:
            return Any
        if "$ref" in schema:
            return self.ref(schema["$ref"])
        if "const" in schema:
            return Literal[schema["const"]]
        if schema.get("enum"):
            return Literal[tuple(schema["enum"])]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                members = tuple(self.type_of(member) for member in schema[key])
                return Union[members] if members else Any  # noqa: UP007 - built at run time
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self.type_of(schema["allOf"][0])
        return self.typed(schema)

    def typed(self, schema: dict[str, Any]) -> Any:
        kind = schema.get("type")
        if isinstance(kind, list):
            return Union[tuple(self.type_of({**schema, "type": k}) for k in kind)]  # noqa: UP007
        if kind == "string":
            return _FORMATS.get(schema.get("format", ""), str)
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            return list[self.type_of(schema.get("items"))]  # type: ignore[misc]
        if kind == "object":
            if "properties" in schema:
                return self.model(schema.get("title", "Object"), schema)
            extra = schema.get("additionalProperties")
            return dict[str, self.type_of(extra) if isinstance(extra, dict) else Any]  # type: ignore[misc]
        return Any

    def ref(self, ref: str) -> Any:
        name = ref.rsplit("/", 1)[-1]
        if name not in self.models:
            self.models[name] = Any  # a recursive reference accepts anything
            self.models[name] = self.type_of(self.defs.get(name, {}))
        return self.models[name]

    def model(self, name: str, schema: dict[str, Any]) -> type[BaseModel]:
        required = set(schema.get("required", []))
        fields: dict[str, Any] = {}
        for field_name, field_schema in schema.get("properties", {}).items():
            annotation = self.type_of(field_schema)
            if field_name in required:
                fields[field_name] = (annotation, Field(...))
            else:
                fields[field_name] = (annotation, Field(default=field_schema.get("default")))
        forbid = schema.get("additionalProperties") is False
        config = ConfigDict(extra="forbid" if forbid else "allow")
        model: type[BaseModel] = create_model(name, __config__=config, **fields)
        return model


def model_from_schema(schema: dict[str, Any], name: str = "Parameters") -> type[BaseModel]:
    """A pydantic model that validates what ``schema`` (an object schema) describes."""
    builder = _Builder(schema)
    return builder.model(name, {**schema, "type": "object"})
