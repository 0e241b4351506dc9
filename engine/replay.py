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
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from flowbus.engine.event_types import FLOW_RUN_STATES, EventType
from flowbus.engine.states import StateType

if TYPE_CHECKING:
    from flowbus.engine.events import StoredEventModel

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
    """A stored event (``StoredEvent``, ``EventRecord``): its type, and its model on demand."""

    @property
    def type(self) -> str: ...
    def typed(self) -> StoredEventModel: ...


#: The events a replay table is folded from (the others of a run's stream are skipped unread).
_FOLDED = frozenset(
    {EventType.FLOW_RUN_STATE, EventType.TASK_RUN_CREATED, EventType.TASK_RUN_STATE}
)


def replay_entries(events: Iterable[_Event]) -> list[ReplayEntry]:
    """Every task run of a flow run's stream that completed with a recorded output, the latest
    for each identity, in the order they completed."""
    from flowbus.engine.events import FlowRunStateChanged, TaskRunCreated, TaskRunStateChanged

    attempt = 0
    created: dict[UUID, TaskRunCreated] = {}
    table = ReplayTable()
    for stored in events:
        if stored.type not in _FOLDED:
            continue
        event = stored.typed()
        if isinstance(event, FlowRunStateChanged):
            if event.attempt is not None:
                attempt = event.attempt
        elif isinstance(event, TaskRunCreated):
            if event.position is not None:
                created[event.task_run_id] = event
        elif isinstance(event, TaskRunStateChanged):
            origin = created.get(event.task_run_id)
            completed = event.state.type is StateType.COMPLETED
            if event.output is None or origin is None or origin.position is None or not completed:
                continue
            table.add(
                ReplayEntry(
                    task_key=origin.task_key,
                    position=origin.position,
                    input_hash=origin.input_hash,
                    output=event.output,
                    attempt=event.replayed_from or attempt,
                    task_run_id=str(event.replay_of or event.task_run_id),
                    name=origin.name,
                )
            )
    return list(table)


#: The prefix of a subflow's key in a replay table (tasks use their task keys).
SUBFLOW = "flow:"


def subflow_entry(run_id: str, events: Iterable[_Event]) -> ReplayEntry | None:
    """The replay entry a completed subflow run's stream gives its parent, if any."""
    from flowbus.engine.events import FlowRunCreated, FlowRunStateChanged

    created: FlowRunCreated | None = None
    completed: FlowRunStateChanged | None = None
    for stored in events:
        if stored.type not in FLOW_RUN_STATES:
            continue
        event = stored.typed()
        if isinstance(event, FlowRunCreated):
            created = event
        elif isinstance(event, FlowRunStateChanged) and event.state.type is StateType.COMPLETED:
            completed = event
    if created is None or created.position is None or completed is None:
        return None
    if completed.output is None:
        return None
    return ReplayEntry(
        task_key=SUBFLOW + created.flow_name,
        position=created.position,
        input_hash=created.input_hash,
        output=completed.output,
        attempt=completed.replayed_from or created.parent_attempt or 0,
        task_run_id=str(completed.replay_of or run_id),
        name=created.name,
    )
