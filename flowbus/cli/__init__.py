"""The ``flowbus`` command line."""

from flowbus.cli.app import app, main

__all__ = ["app", "main"]
