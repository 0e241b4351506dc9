"""Replay: a flow run that executes again returns the results its tasks completed before.

A task run's identity within its flow run is its task key and its call position (the n-th call
of that task in the flow body's current try, counted from 0: Prefect's dynamic key), checked
against the hash of its inputs. When the run executes again (its agent died, a flow retry, a
resume after a pause, ``flowbus runs retry``), a call whose identity has a Completed result
from before returns that result without running. A call that matches nothing, whose inputs
differ, or whose result cannot be read runs as usual: replay never fails a run.

``replay_entries`` folds a run's recorded events into the table an agent is given; it is a
pure function of the events, so every orchestrator gives the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

#: The name of the Completed state of a task run that was replayed rather than run.
REPLAYED = "Replayed"


@dataclass(frozen=True, slots=True)
class ReplayEntry:
    """A completed task run an earlier attempt (or try) of the flow run recorded."""

    task_key: str
    position: int
    input_hash: str | None
    output: dict[str, Any]
    #: The attempt (claim) of the flow run that ran it; 0 for a run not claimed (by hand).
    attempt: int
    task_run_id: str
    name: str

    @property
    def identity(self) -> tuple[str, int]:
        return (self.task_key, self.position)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplayEntry:
        return cls(**data)


class ReplayTable:
    """Completed task runs by identity; the latest recorded for an identity wins."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Iterable[ReplayEntry] = ()) -> None:
        self._entries: dict[tuple[str, int], ReplayEntry] = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: ReplayEntry) -> None:
        self._entries[entry.identity] = entry

    def match(self, task_key: str, position: int, input_hash: str | None) -> ReplayEntry | None:
        """The entry a call can replay: same identity and same inputs (inputs that could not
        be hashed match nothing: the task runs again)."""
        entry = self._entries.get((task_key, position))
        if entry is None or input_hash is None or entry.input_hash != input_hash:
            return None
        return entry

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[ReplayEntry]:
        return iter(self._entries.values())


class _Event(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...


def replay_entries(events: Iterable[_Event]) -> list[ReplayEntry]:
    """Every task run of a flow run's stream that completed with a recorded output, the latest
    for each identity, in the order they completed."""
    attempt = 0
    created: dict[str, dict[str, Any]] = {}
    table = ReplayTable()
    for event in events:
        data = event.data
        kind = event.type
        if kind == "flow_run.state":
            if data.get("attempt") is not None:
                attempt = data["attempt"]
        elif kind == "task_run.created":
            if data.get("position") is not None:
                created[data["task_run_id"]] = data
        elif kind == "task_run.state":
            output = data.get("output")
            origin = created.get(data["task_run_id"])
            if output is None or origin is None or data["state"]["type"] != "COMPLETED":
                continue
            table.add(
                ReplayEntry(
                    task_key=origin["task_key"],
                    position=origin["position"],
                    input_hash=origin.get("input_hash"),
                    output=output,
                    attempt=data.get("replayed_from") or attempt,
                    task_run_id=data.get("replay_of") or data["task_run_id"],
                    name=origin["name"],
                )
            )
    return list(table)


#: The prefix of a subflow's key in a replay table (tasks use their task keys).
SUBFLOW = "flow:"


def subflow_entry(run_id: str, events: Iterable[_Event]) -> ReplayEntry | None:
    """The replay entry a completed subflow run's stream gives its parent, if any."""
    created: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    origin: dict[str, Any] = {}
    for event in events:
        data = event.data
        if event.type == "flow_run.created":
            created = data
        elif event.type == "flow_run.state" and data["state"]["type"] == "COMPLETED":
            output = data.get("output")
            origin = data
    if created is None or created.get("position") is None or output is None:
        return None
    return ReplayEntry(
        task_key=SUBFLOW + created["flow_name"],
        position=created["position"],
        input_hash=created.get("input_hash"),
        output=output,
        attempt=origin.get("replayed_from") or created.get("parent_attempt") or 0,
        task_run_id=origin.get("replay_of") or run_id,
        name=created["name"],
    )
