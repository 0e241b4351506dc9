"""Flow parameters: validated and coerced by pydantic from the function's signature."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from flowbus.engine.errors import ParameterTypeError

if TYPE_CHECKING:
    from pydantic import BaseModel


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    """The signature with string annotations (``from __future__ import annotations``) resolved;
    one that cannot be resolved (a class local to a function, say) accepts any value."""
    try:
        return inspect.signature(fn, eval_str=True)
    except Exception:
        signature = inspect.signature(fn)
    namespace = getattr(fn, "__globals__", {})
    params = []
    for param in signature.parameters.values():
        annotation = param.annotation
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)
            except Exception:
                annotation = Any
        params.append(param.replace(annotation=annotation))
    return signature.replace(parameters=params)


class ParameterSchema:
    """The parameters of one function: validation, coercion and a JSON schema.

    Internally each parameter is field ``p<i>`` aliased to its real name, so a parameter may be
    called ``json`` or ``model_config`` without clashing with pydantic's own attributes. The
    pydantic model is built on first use: tasks only bind arguments and never need it.
    """

    def __init__(self, fn: Callable[..., Any], owner: str) -> None:
        self.owner = owner
        self._fn = fn

    @cached_property
    def signature(self) -> inspect.Signature:
        return _signature(self._fn)

    @cached_property
    def model(self) -> type[BaseModel]:
        from pydantic import ConfigDict, Field, create_model

        fields: dict[str, Any] = {}
        for index, (name, param) in enumerate(self.signature.parameters.items()):
            annotation: Any = (
                Any if param.annotation is inspect.Parameter.empty else param.annotation
            )
            default: Any
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                annotation, default = tuple[annotation, ...], ()
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                annotation, default = dict[str, annotation], {}
            else:
                default = ... if param.default is inspect.Parameter.empty else param.default
            fields[f"p{index}"] = (annotation, Field(default, alias=name))
        model: type[BaseModel] = create_model(
            f"{self.owner}_parameters",
            __config__=ConfigDict(arbitrary_types_allowed=True, extra="forbid"),
            **fields,
        )
        return model

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Map a call's arguments to parameter names, with defaults applied (no validation)."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ParameterTypeError(
                self.owner, [{"loc": (), "msg": str(exc), "type": "bind"}]
            ) from exc
        bound.apply_defaults()
        return dict(bound.arguments)

    @cached_property
    def _exact_types(self) -> dict[str, type] | None:
        """Parameters whose annotation is a plain builtin (or absent), or None if any is not."""
        simple: dict[str, type] = {}
        for name, param in self.signature.parameters.items():
            annotation = param.annotation
            if annotation is inspect.Parameter.empty or annotation is Any:
                simple[name] = object
            elif annotation in (int, float, str, bool, bytes) and param.kind in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                inspect.Parameter.KEYWORD_ONLY,
            ):
                simple[name] = annotation
            else:
                return None
        return simple

    def _already_valid(self, parameters: dict[str, Any]) -> bool:
        # Values that already have exactly their annotated builtin type are what pydantic would
        # return unchanged; checking that here spares importing pydantic in short processes.
        exact = self._exact_types
        if exact is None or parameters.keys() != exact.keys():
            return False
        return all(t is object or type(parameters[n]) is t for n, t in exact.items())

    def validate(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Validate and coerce named parameters; raise ``ParameterTypeError`` if invalid."""
        if self._already_valid(parameters):
            return dict(parameters)
        from pydantic import ValidationError

        try:
            model = self.model.model_validate(parameters)
        except ValidationError as exc:
            errors = [dict(error) for error in exc.errors(include_url=False)]
            raise ParameterTypeError(self.owner, errors) from exc
        fields = type(model).model_fields
        return {str(field.alias): getattr(model, name) for name, field in fields.items()}

    def validate_partial(self, given: dict[str, Any]) -> dict[str, Any]:
        """Validate and coerce some of the parameters (a deployment's defaults, say).

        Unknown names and invalid values raise ``ParameterTypeError``; parameters not given
        are not required here (they are when a run starts).
        """
        from pydantic import ConfigDict, TypeAdapter, ValidationError

        known = self.signature.parameters
        errors: list[dict[str, Any]] = [
            {"loc": (name,), "msg": "not a parameter of this flow", "type": "unknown"}
            for name in given
            if name not in known
        ]
        coerced: dict[str, Any] = {}
        config = ConfigDict(arbitrary_types_allowed=True)
        for name, value in given.items():
            if name not in known:
                continue
            annotation = known[name].annotation
            if annotation is inspect.Parameter.empty:
                coerced[name] = value
                continue
            try:
                coerced[name] = TypeAdapter(annotation, config=config).validate_python(value)
            except ValidationError as exc:
                for error in exc.errors(include_url=False):
                    errors.append({**error, "loc": (name, *error["loc"])})
        if errors:
            raise ParameterTypeError(self.owner, errors)
        return coerced

    def call_arguments(self, parameters: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Turn named parameters back into positional and keyword arguments for the call."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, param in self.signature.parameters.items():
            if name not in parameters:
                continue
            value = parameters[name]
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                args.extend(value)
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                kwargs.update(value)
            elif param.kind is inspect.Parameter.KEYWORD_ONLY:
                kwargs[name] = value
            else:
                args.append(value)
        return args, kwargs

    def json_schema(self) -> dict[str, Any]:
        """The parameters' JSON schema (what deployments and the UI build forms from)."""
        from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
        from pydantic_core import core_schema

        class LenientSchema(GenerateJsonSchema):
            """Types JSON Schema cannot describe (a DataFrame, say) become ``{}``: any value."""

            def handle_invalid_for_json_schema(
                self, schema: core_schema.CoreSchema, error_info: str
            ) -> JsonSchemaValue:
                return {}

        schema = self.model.model_json_schema(by_alias=True, schema_generator=LenientSchema)
        schema["title"] = "Parameters"
        return schema
