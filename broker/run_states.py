"""The newest state of a run on the events stream: the one reader of it, for clients (a
run's result, waits) and orchestrators (has a granted run started; is an agent ahead of the
store).

Not simply the subject's last message: an orchestrator publishes the states it records
(Pending, say) after committing them, which can be after the agent's later ones, so the
stream's order is not the run's. The run's own sequence numbers decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nats.js.errors import NotFoundError

from flowbus.broker import subjects
from flowbus.engine.events import (
    DecodeError,
    FlowRunCreated,
    FlowRunStateChanged,
    FlowRunStateEvent,
    decode_event,
)


@dataclass(frozen=True, slots=True)
class NewestState:
    """A run's newest state event on the stream, and the attempt of the agent that published
    it (its ``Flowbus-Attempt`` header; None for an orchestrator's or a run by hand's)."""

    event: FlowRunStateEvent
    attempt: int | None

    @property
    def seq(self) -> int:
        return self.event.seq


async def newest_state(
    js: Any, run_id: str, skip: frozenset[str] = frozenset()
) -> NewestState | None:
    """The run's newest state event already in the events stream (by the run's own sequence),
    if any. Messages that are not events are skipped (the recorder dead-letters them), and so
    are the events whose ids are in ``skip`` (found not to be what the store recorded)."""
    newest: NewestState | None = None
    position = 0
    subject = subjects.event_subject(run_id, "flow_run.>")
    while True:
        try:
            message = await js.get_msg(
                subjects.EVENTS_STREAM, seq=position + 1, subject=subject, next=True
            )
        except NotFoundError:
            return newest
        position = message.seq or position + 1
        try:
            event = decode_event(message.data or b"", tolerant=True)
        except DecodeError:
            continue
        if not isinstance(event, FlowRunCreated | FlowRunStateChanged) or str(event.id) in skip:
            continue
        if newest is None or event.seq > newest.seq:
            newest = NewestState(event, _attempt(message.headers))


def _attempt(headers: dict[str, str] | None) -> int | None:
    value = (headers or {}).get(subjects.ATTEMPT_HEADER)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


__all__ = ["NewestState", "newest_state"]
