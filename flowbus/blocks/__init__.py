"""Blocks under the package name Prefect users import them from (``prefect.blocks``)."""

from flowbus.engine.blocks import Block

__all__ = ["Block"]
