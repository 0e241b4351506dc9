"""The block base class, as ``prefect.blocks.core`` offers it."""

from flowbus.engine.blocks import Block

__all__ = ["Block"]
