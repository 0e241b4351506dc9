"""Stream and subject names: the wire layout other services rely on (see docs/protocol.md)."""

from __future__ import annotations

#: Every event: ``flowbus.event.<stream_id>.<event type>`` (the type has dots of its own, e.g.
#: ``flowbus.event.<run_id>.task_run.state``: a flow run's stream id is the run id); a run's
#: events are ``flowbus.event.<run_id>.>``.
EVENTS_STREAM = "FLOWBUS_EVENTS"
EVENTS_SUBJECTS = "flowbus.event.>"

#: Messages a daemon could not process, kept for inspection: ``flowbus.dead.<source>``.
DEAD_LETTER_STREAM = "FLOWBUS_DEAD"
DEAD_LETTER_SUBJECTS = "flowbus.dead.>"

#: The durable consumer through which the recorder writes events into the store.
RECORDER_CONSUMER = "recorder"


def event_subject(stream_id: str, event_type: str) -> str:
    return f"flowbus.event.{stream_id}.{event_type}"


def dead_letter_subject(source: str) -> str:
    return f"flowbus.dead.{source}"
