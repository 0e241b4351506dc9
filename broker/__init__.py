"""How messages move: the NATS connection, the embedded nats-server, subjects and codecs."""

from flowbus.broker.errors import BrokerError, PortInUse
from flowbus.broker.server import EmbeddedNatsServer, find_nats_server

__all__ = ["BrokerError", "EmbeddedNatsServer", "PortInUse", "find_nats_server"]
