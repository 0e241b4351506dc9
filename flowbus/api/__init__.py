"""The HTTP API (FastAPI), served by ``flowbus up`` and ``flowbus server start``."""

from flowbus.api.app import create_app
from flowbus.api.server import ApiServer

__all__ = ["ApiServer", "create_app"]
