"""The ledger's runs by id, indexed by whether they are finished.

A leader keeps a finished run for ``KEEP_FINISHED`` seconds (a late wait, claim or duplicate
submission finds it without a read), and at most the newest ``KEEP_FINISHED_AT_MOST`` of them
(``ledger.py``): at a steady 500 runs a second, ten minutes would be some 300,000 runs and
260 MB. What looks at the runs every second (the janitor's sweep, the purge of finished runs)
must not walk all of them: at about a microsecond a run, such a walk held the orchestrator's
loop for a quarter of a second or more, every second. Here the runs that may be unfinished are
kept apart, and the finished ones in the order they finished, so a sweep costs what is under
way and a purge what it drops.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping, ValuesView

from flowbus.agents.run_entry import RunEntry


class RunEntries(MutableMapping[str, RunEntry]):
    """A dict of runs by id (what the ledger's readers use of one), which also knows its
    unfinished runs (``unfinished``) and drops finished ones by age (``drop_finished``).

    An entry changed in place is filed again with ``refile`` (the ledger does it after every
    state change); one found finished by ``unfinished`` is filed by itself."""

    def __init__(self) -> None:
        self._all: dict[str, RunEntry] = {}
        #: Runs that may be unfinished (a superset: those found finished move on).
        self._open: dict[str, None] = {}
        #: Finished runs, oldest end first: run id -> when it finished (monotonic).
        self._finished: dict[str, float] = {}

    # --- a dict of runs -------------------------------------------------------------------
    # ``get`` and ``pop`` are the dict's own: the mapping's defaults raise and catch KeyError
    # on a miss (six times the cost), and a new run is a miss on every submission's path.

    def get(self, run_id: str, default: RunEntry | None = None) -> RunEntry | None:  # type: ignore[override]
        return self._all.get(run_id, default)

    def pop(self, run_id: str, default: RunEntry | None = None) -> RunEntry | None:  # type: ignore[override]
        self._forget(run_id)
        return self._all.pop(run_id, default)

    def __getitem__(self, run_id: str) -> RunEntry:
        return self._all[run_id]

    def __setitem__(self, run_id: str, entry: RunEntry) -> None:
        self._all[run_id] = entry
        self.refile(entry)

    def __delitem__(self, run_id: str) -> None:
        del self._all[run_id]
        self._forget(run_id)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._all

    def __iter__(self) -> Iterator[str]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def values(self) -> ValuesView[RunEntry]:  # the dict's own: every sweep of a follower
        return self._all.values()

    def clear(self) -> None:
        self._all.clear()
        self._open.clear()
        self._finished.clear()

    # --- by whether they are finished -----------------------------------------------------

    def refile(self, entry: RunEntry) -> None:
        """File ``entry`` again after a change of its state."""
        run_id = entry.run_id
        if entry.state.is_terminal:
            self._open.pop(run_id, None)
            self._finished.pop(run_id, None)  # to the end: it finished last
            at = entry.finished_at
            self._finished[run_id] = at if at is not None else time.monotonic()
        else:
            self._finished.pop(run_id, None)
            self._open[run_id] = None

    def unfinished(self) -> list[RunEntry]:
        """The runs not finished, oldest filed first."""
        found: list[RunEntry] = []
        for run_id in list(self._open):
            entry = self._all.get(run_id)
            if entry is None:
                del self._open[run_id]
            elif entry.state.is_terminal:
                self.refile(entry)
            else:
                found.append(entry)
        return found

    def drop_finished(self, older_than: float, keep_at_most: int | None = None) -> int:
        """Drop the runs that finished before monotonic ``older_than``, and the oldest beyond
        the newest ``keep_at_most``; how many."""
        beyond = len(self._finished) - keep_at_most if keep_at_most is not None else 0
        old: list[str] = []
        for run_id, at in self._finished.items():
            if at >= older_than and len(old) >= beyond:
                break
            old.append(run_id)
        dropped = 0
        for run_id in old:
            del self._finished[run_id]
            if self._all[run_id].state.is_terminal:
                del self._all[run_id]
                dropped += 1
            else:  # changed in place without being filed again: under way after all
                self._open[run_id] = None
        return dropped

    def _forget(self, run_id: str) -> None:
        self._open.pop(run_id, None)
        self._finished.pop(run_id, None)


__all__ = ["RunEntries"]
