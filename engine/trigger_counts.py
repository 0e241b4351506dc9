"""What an event trigger has seen so far, and whether an event fires it (pure: the automation
engine holds one ``TriggerCounts`` and gives it each matching event with the time).

An event trigger fires when ``threshold`` matching events arrive within ``within`` seconds,
counted apart per value of its ``for_each`` labels; with ``after``, only once one of those
events has been seen in the group (and the group waits for the next one after it fires).
Held in memory: a restart of the leading orchestrator starts the counts again.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from flowbus.engine.automations import Automation, EventTrigger

Group = tuple[str, tuple[str, ...]]


def wants_type(automation: Automation, event_type: str) -> bool:
    """Could an event of this type matter to the automation (as its match, or its ``after``)?"""
    trigger = automation.trigger
    after = trigger.after if isinstance(trigger, EventTrigger) else None
    return trigger.match.matches_type(event_type) or (
        after is not None and after.matches_type(event_type)
    )


def wants_run_states(automation: Automation) -> bool:
    """Could a run's state change (an event ``flow-run.<state>``) ever matter to the automation?
    A type pattern with a wildcard is taken to say yes (``*``, the default, matches them all)."""
    trigger = automation.trigger
    patterns = [trigger.match.type]
    if isinstance(trigger, EventTrigger) and trigger.after is not None:
        patterns.append(trigger.after.type)
    flat = [one for each in patterns for one in ([each] if isinstance(each, str) else each)]
    return any(p.startswith("flow-run.") or any(c in p for c in "*?[") for p in flat)


class TriggerCounts:
    """Recent matching events per (automation, ``for_each`` group), and armed groups."""

    def __init__(self) -> None:
        self._windows: dict[Group, deque[float]] = {}
        self._armed: set[Group] = set()

    def counts(self, automation: Automation, event: dict[str, Any]) -> bool:
        """Whether ``event`` goes on to the trigger's match at all (an ``after`` event arms its
        group and counts only if it also matches)."""
        trigger = automation.trigger
        if not isinstance(trigger, EventTrigger) or trigger.after is None:
            return True
        group = (automation.name, trigger.group_of(event))
        if trigger.after.matches(event):
            self._armed.add(group)
            return trigger.match.matches(event)
        return group in self._armed

    def fires(self, name: str, trigger: EventTrigger, event: dict[str, Any], now: float) -> bool:
        """Add a matching event seen at ``now`` (monotonic seconds); whether the trigger fires."""
        group = (name, trigger.group_of(event))
        if trigger.threshold > 1:
            window = self._windows.setdefault(group, deque())
            window.append(now)
            while trigger.within and window and now - window[0] > trigger.within:
                window.popleft()
            if len(window) < trigger.threshold:
                return False
            window.clear()
        self._armed.discard(group)  # after firing, the group waits for its next ``after``
        return True


__all__ = ["TriggerCounts", "wants_run_states", "wants_type"]
