"""Who runs: the long-lived daemons, each a NATS subscriber."""

from flowbus.agents.recorder import Recorder, RecorderSettings

__all__ = ["Recorder", "RecorderSettings"]
