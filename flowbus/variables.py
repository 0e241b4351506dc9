"""Variables: named JSON values kept in the store (Prefect's ``prefect.variables``).

    from flowbus.variables import Variable

    Variable.set("region", "eu-west-1", overwrite=True)
    region = Variable.get("region", default="us-east-1")
    # in an async flow:
    region = await Variable.get("region")

The module-level ``get``/``set``/``unset`` (and ``aget``/``aset``/``aunset``) are flowbus's own
shorter spelling of the same.
"""

from __future__ import annotations

from typing import Any

from flowbus._dispatch import dispatch
from flowbus.engine.variables import aget, aset, aunset, get, set, unset

_MISSING: Any = object()


class Variable:
    """Prefect's ``Variable`` API: class methods, sync or awaited."""

    def __init__(self, name: str, value: Any, tags: list[str] | None = None) -> None:
        self.name = name
        self.value = value
        self.tags = list(tags or [])

    def __repr__(self) -> str:
        return f"Variable(name={self.name!r}, value={self.value!r})"

    @classmethod
    async def aset(
        cls, name: str, value: Any, tags: list[str] | None = None, overwrite: bool = False
    ) -> Variable:
        """Set a variable; an existing one is replaced only with ``overwrite=True``
        (otherwise ``ValueError``)."""
        if not overwrite and await aget(name, _MISSING) is not _MISSING:
            raise ValueError(
                f"Variable {name!r} already exists. Use `overwrite=True` to update it."
            )
        await aset(name, value, tags=tags)
        return cls(name, value, tags)

    @classmethod
    def set(
        cls, name: str, value: Any, tags: list[str] | None = None, overwrite: bool = False
    ) -> Any:
        return dispatch(cls.aset(name, value, tags, overwrite))

    @classmethod
    async def aget(cls, name: str, default: Any = None) -> Any:
        """The variable's value, or ``default`` (None) when it is not set."""
        return await aget(name, default)

    @classmethod
    def get(cls, name: str, default: Any = None) -> Any:
        return dispatch(cls.aget(name, default))

    @classmethod
    async def aunset(cls, name: str) -> bool:
        """Remove a variable; False when there was none."""
        return await aunset(name)

    @classmethod
    def unset(cls, name: str) -> Any:
        return dispatch(cls.aunset(name))


__all__ = ["Variable", "aget", "aset", "aunset", "get", "set", "unset"]
