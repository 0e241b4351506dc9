"""Reading what a run recorded, for engine tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from flowbus.engine.records import EventRecord
from flowbus.engine.sinks import ListSink, use_sink


class Recorded:
    """The events of everything run inside ``capture``."""

    def __init__(self, records: list[EventRecord]) -> None:
        self.records = records

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r.data for r in self.records if r.type == kind]

    def task_states(self, task_name_prefix: str) -> list[str]:
        ids = {
            d["task_run_id"]
            for d in self.of_type("task_run.created")
            if d["name"].startswith(task_name_prefix)
        }
        return [
            d["state"]["name"]
            for d in self.records_data()
            if d["type"].startswith("task_run.") and d["task_run_id"] in ids
        ]

    def task_runs(self) -> list[dict[str, Any]]:
        return self.of_type("task_run.created")

    def flow_states(self, run_id: str | None = None) -> list[str]:
        return [
            d["state"]["name"]
            for d in self.records_data()
            if d["type"].startswith("flow_run.") and (run_id is None or d["stream_id"] == run_id)
        ]

    def logs(self) -> list[str]:
        return [d["message"] for d in self.of_type("log")]

    def records_data(self) -> list[dict[str, Any]]:
        return [r.data for r in self.records]


def capture(call: Callable[[], Any]) -> tuple[Any, Recorded]:
    """Run ``call`` with events sent to a list; return its result and the events."""
    sink = ListSink()
    with use_sink(sink):
        result = call()
    return result, Recorded(sink.records)


class ConcurrencyProbe:
    """Counts how many calls of ``busy`` overlap; ``peak`` is the most at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def busy(self) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(self.seconds)
        with self._lock:
            self.running -= 1
