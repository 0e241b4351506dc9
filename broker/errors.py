"""Errors of the broker layer."""

from __future__ import annotations

from flowbus.engine.errors import FlowbusError


class BrokerError(FlowbusError):
    """The message broker (NATS) could not be started, reached or used."""


class PortInUse(BrokerError):
    """The port asked for is taken by another process."""
