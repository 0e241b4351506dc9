"""OpenTelemetry traces of runs (``pip install 'flowbus[otel]'``): imported only when used.

A span per flow run and per task run: a task run's span is a child of its flow run's, a
subflow run's of its parent's; each state the run enters is an event of its span, and a run
that ends Failed or Crashed sets the span's status to error. Spans are made from the runs'
own state events (``TracingSink`` wraps the sink a run records to), so they carry the times
the states were entered, in runs by hand and in runs agents execute alike.

Exported over OTLP (HTTP) when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, with the standard
``OTEL_*`` variables (service name default ``flowbus``); without it, or without the extra
installed, nothing is traced and nothing is imported.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from flowbus.engine.event_types import FLOW_RUN_STATES, TASK_RUN_STATES
from flowbus.engine.records import EventRecord
from flowbus.engine.sinks import EventSink
from flowbus.engine.states import StateType
from flowbus.engine.states import StateType as S

if TYPE_CHECKING:  # the models (pydantic) load with the first traced run, not with flowbus
    from flowbus.engine.events import StatePayload

#: States after which a run's span ends (a Paused run continues in a span of its next attempt).
_ENDS = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.CRASHED, S.PAUSED})
#: The events spans are made of (the others pass by unread).
_STATE_EVENTS = FLOW_RUN_STATES | TASK_RUN_STATES


def _nanos(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000_000)


def _key(run_id: UUID | None) -> str | None:
    return str(run_id) if run_id is not None else None


class TracingSink:
    """Passes every event on to ``inner`` and makes spans of the runs' state events.

    ``claimed`` names a run created elsewhere (a deployed run: the orchestrator recorded its
    creation, the agent's engine starts at its claim): ``{run_id: (name, flow, deployment)}``.
    """

    def __init__(
        self,
        inner: EventSink,
        tracer: Any,
        claimed: dict[str, tuple[str, str, str | None]] | None = None,
    ) -> None:
        self.inner = inner
        self.tracer = tracer
        self.claimed = dict(claimed or {})
        self._spans: dict[str, Any] = {}  # open spans by flow run id or task run id
        self._lock = threading.Lock()

    def emit(self, record: EventRecord) -> None:
        self.inner.emit(record)
        try:
            with self._lock:
                self._observe(record)
        except Exception:
            pass

    def flush(self, timeout: float | None = None) -> None:
        self.inner.flush(timeout)

    async def flush_async(self) -> None:
        flush_async = getattr(self.inner, "flush_async", None)
        if flush_async is not None:
            await flush_async()
        else:
            self.inner.flush()

    def _observe(self, record: EventRecord) -> None:
        if record.type not in _STATE_EVENTS:
            return
        from flowbus.engine.events import (
            FlowRunCreated,
            FlowRunStateChanged,
            TaskRunCreated,
            TaskRunStateChanged,
        )

        event = record.typed()
        run_id = record.stream_id
        if isinstance(event, FlowRunCreated):
            parent = event.parent_task_run_id or event.parent_run_id
            attributes = {
                "flowbus.flow_run.id": run_id,
                "flowbus.flow": event.flow_name,
                "flowbus.deployment": event.deployment or "",
            }
            self._start(run_id, f"flow run {event.name}", _key(parent), event.state, attributes)
        elif isinstance(event, TaskRunCreated):
            task_run_id = str(event.task_run_id)
            attributes = {"flowbus.task_run.id": task_run_id, "flowbus.task": event.task_key,
                          "flowbus.flow_run.id": run_id}  # fmt: skip
            self._start(task_run_id, f"task run {event.name}", run_id, event.state, attributes)
        elif isinstance(event, FlowRunStateChanged) and run_id in self.claimed:
            name, flow, deployment = self.claimed.pop(run_id)
            attributes = {"flowbus.flow_run.id": run_id, "flowbus.flow": flow,
                          "flowbus.deployment": deployment or ""}  # fmt: skip
            self._start(run_id, f"flow run {name}", None, event.state, attributes)
        elif isinstance(event, FlowRunStateChanged):
            self._state(run_id, event.state)
        elif isinstance(event, TaskRunStateChanged):
            self._state(str(event.task_run_id), event.state)

    def _start(
        self, key: str, name: str, parent: str | None, state: StatePayload, attributes: Any
    ) -> None:
        from opentelemetry import trace

        parent_span = self._spans.get(parent) if parent else None
        context = trace.set_span_in_context(parent_span) if parent_span is not None else None
        span = self.tracer.start_span(name, context=context, attributes=attributes,
                                      start_time=_nanos(state.timestamp))  # fmt: skip
        self._spans[key] = span
        self._state(key, state)

    def _state(self, key: str, state: StatePayload) -> None:
        span = self._spans.get(key)
        if span is None:
            return
        when = _nanos(state.timestamp)
        span.add_event(state.name, {"message": state.message or ""}, timestamp=when)
        if state.type in _ENDS:
            if state.type in (StateType.FAILED, StateType.CRASHED):
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR, state.message or state.name))
            span.end(end_time=when)
            del self._spans[key]


_tracer: Any = None
_tracer_lock = threading.Lock()


def configured_tracer() -> Any:
    """The tracer runs are traced with: made once, exporting over OTLP, when
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and the ``otel`` extra installed; else None."""
    global _tracer
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    with _tracer_lock:
        if _tracer is None:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
                from opentelemetry.sdk.resources import Resource
                from opentelemetry.sdk.trace import TracerProvider
                from opentelemetry.sdk.trace.export import BatchSpanProcessor
            except ImportError:
                return None
            resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                                       "flowbus")})  # fmt: skip
            provider = TracerProvider(resource=resource)
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            _tracer = provider.get_tracer("flowbus")
    return _tracer


def traced(
    sink: EventSink, claimed: dict[str, tuple[str, str, str | None]] | None = None
) -> EventSink:
    """``sink``, traced when tracing is configured (see ``configured_tracer``)."""
    tracer = configured_tracer()
    return TracingSink(sink, tracer, claimed) if tracer is not None else sink
