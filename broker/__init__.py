"""How messages move: the NATS connection, the embedded nats-server, subjects and codecs."""

from flowbus.broker.connection import connect, nats_url
from flowbus.broker.dead_letters import dead_letter
from flowbus.broker.errors import BrokerError, PortInUse
from flowbus.broker.event_sink import NatsEventSink
from flowbus.broker.server import EmbeddedNatsServer, find_nats_server
from flowbus.broker.streams import ensure_streams

__all__ = [
    "BrokerError",
    "EmbeddedNatsServer",
    "NatsEventSink",
    "PortInUse",
    "connect",
    "dead_letter",
    "ensure_streams",
    "find_nats_server",
    "nats_url",
]
