"""OpenTelemetry traces of runs: a span per flow run and task run, parents linked, states as
span events, errors as error status (an in-memory exporter stands in for OTLP)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from flowbus import flow, task
from flowbus.engine.sinks import ListSink, use_sink
from flowbus.engine.tracing import TracingSink

trace_sdk = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode  # noqa: E402


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    yield InMemorySpanExporter()


def traced_run(exporter: InMemorySpanExporter, call: Any) -> list[Any]:
    provider = trace_sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = TracingSink(ListSink(), provider.get_tracer("test"))
    # A failing flow is part of what is traced.
    with use_sink(tracing), contextlib.suppress(Exception):
        call()
    return list(exporter.get_finished_spans())


def test_spans_of_a_flow_its_tasks_and_a_subflow(exporter: InMemorySpanExporter) -> None:
    @task
    def double(x: int) -> int:
        return 2 * x

    @task
    def explode() -> None:
        raise ValueError("boom")

    @flow
    def child() -> int:
        return double(5)

    @flow
    def parent() -> int:
        explode(return_state=True)
        return double(1) + child()

    # Found by attribute: run names are drawn at random, and two may share a first word.
    spans = traced_run(exporter, parent)
    flow_span = next(s for s in spans if s.name.startswith("flow run") and
                     s.attributes.get("flowbus.flow") == "parent")  # fmt: skip
    child_span = next(s for s in spans if s.name.startswith("flow run") and
                      s.attributes.get("flowbus.flow") == "child")  # fmt: skip
    tasks = [s for s in exporter.get_finished_spans() if s.name.startswith("task run")]
    assert len(tasks) == 3  # explode, double in parent, double in child
    assert child_span.parent.span_id == flow_span.context.span_id
    assert all(s.context.trace_id == flow_span.context.trace_id for s in tasks)
    failed = next(s for s in tasks if "explode" in s.name)
    assert failed.status.status_code is StatusCode.ERROR and "boom" in failed.status.description
    assert failed.parent.span_id == flow_span.context.span_id
    assert [e.name for e in flow_span.events] == ["Pending", "Running", "Completed"]
    assert flow_span.start_time <= failed.start_time <= failed.end_time <= flow_span.end_time


def test_a_claimed_runs_span_starts_at_its_claim(exporter: InMemorySpanExporter) -> None:
    from flowbus.engine.flow_engine import ClaimedRun, FlowRunEngine
    from flowbus.engine.loops import run_sync
    from flowbus.engine.states import Pending

    @task
    def one() -> int:
        return 1

    @flow
    def deployed() -> int:
        return one()

    provider = trace_sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    claimed = ClaimedRun("0190f000-0000-7000-8000-000000000001", "brave-otter", 2, Pending())
    sink = TracingSink(ListSink(), provider.get_tracer("test"),
                       {claimed.id: ("brave-otter", "deployed", "deployed/prod")})  # fmt: skip
    run_sync(FlowRunEngine(deployed, {}, claimed=claimed, sink=sink).run())
    spans = {span.name: span for span in exporter.get_finished_spans()}
    run_span = spans["flow run brave-otter"]
    assert run_span.attributes["flowbus.deployment"] == "deployed/prod"
    assert spans["task run one-0"].parent.span_id == run_span.context.span_id
