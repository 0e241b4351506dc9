"""The orchestrator's tag slot table: limits hold, waiters are served in order, all-or-nothing
for several tags, and slots of dead agents or finished runs come back."""

from __future__ import annotations

from flowbus.engine.slot_table import Holding, SlotTable, Waiter

LIMITS = {"db": 2, "api": 1}


def waiter(holder: str, *tags: str, run: str = "run-1", agent: str = "a1") -> Waiter:
    return Waiter(holder, tags, run, agent, notify=f"_INBOX.{holder}")


def test_a_limit_holds_and_a_freed_slot_goes_to_the_first_waiter() -> None:
    table = SlotTable()
    assert table.acquire(waiter("t1", "db"), LIMITS)
    assert table.acquire(waiter("t2", "db"), LIMITS)
    assert not table.acquire(waiter("t3", "db"), LIMITS)
    assert not table.acquire(waiter("t4", "db"), LIMITS)
    assert table.active("db") == 2
    assert [w.holder for w in table.release("t1", LIMITS)] == ["t3"]
    assert [w.holder for w in table.release("t3", LIMITS)] == ["t4"]
    assert table.active("db") == 2 and table.waiters == []


def test_asking_again_is_safe() -> None:
    table = SlotTable()
    assert table.acquire(waiter("t1", "api"), LIMITS)
    assert table.acquire(waiter("t1", "api"), LIMITS)  # already held
    assert not table.acquire(waiter("t2", "api"), LIMITS)
    again = waiter("t2", "api")
    again.notify = "_INBOX.new"
    assert not table.acquire(again, LIMITS)
    assert [(w.holder, w.notify) for w in table.waiters] == [("t2", "_INBOX.new")]


def test_several_tags_all_or_nothing_and_no_overtaking() -> None:
    table = SlotTable()
    assert table.acquire(waiter("a", "api"), LIMITS)
    assert not table.acquire(waiter("both", "db", "api"), LIMITS)
    assert table.active("db") == 0  # it holds nothing while it waits
    # A db-only task would fit, but must not overtake the waiter that also wants db.
    assert not table.acquire(waiter("later", "db"), LIMITS)
    granted = table.release("a", LIMITS)
    assert [w.holder for w in granted] == ["both", "later"]
    assert table.active("db") == 2 and table.active("api") == 1


def test_a_tag_without_slots_waits_and_a_dead_agents_slots_come_back() -> None:
    table = SlotTable()
    assert not table.acquire(waiter("x", "frozen"), LIMITS)  # limit 0 (or unknown): waits
    assert table.acquire(waiter("t1", "db", agent="dead"), LIMITS)
    assert table.acquire(waiter("t2", "db", agent="dead", run="run-2"), LIMITS)
    assert not table.acquire(waiter("t3", "db", agent="alive", run="run-3"), LIMITS)
    reclaimed, granted = table.release_where(lambda h: h.agent == "dead", LIMITS)
    assert sorted(h.holder for h in reclaimed) == ["t1", "t2"]
    assert [w.holder for w in granted] == ["t3"]
    reclaimed, _ = table.release_where(lambda h: h.run_id == "run-3", LIMITS)
    assert [h.holder for h in reclaimed] == ["t3"] and table.active("db") == 0


def test_holdings_reported_after_a_restart_count_again_unless_just_given_back() -> None:

    table = SlotTable()  # a restarted orchestrator: empty
    assert table.adopt(Holding("t1", ("db",), "run-1", "a1"))
    assert not table.adopt(Holding("t1", ("db",), "run-1", "a1"))  # known already
    assert table.adopt(Holding("t2", ("db",), "run-1", "a1"))
    assert not table.acquire(waiter("t3", "db"), LIMITS)  # the two adopted fill the limit
    assert [w.holder for w in table.release("t1", LIMITS)] == ["t3"]
    # A heartbeat sent just before t1's release arrives after it: t1 does not count again.
    assert not table.adopt(Holding("t1", ("db",), "run-1", "a1"))
    assert table.active("db") == 2


def test_a_waiter_holds_several_slots_of_a_limit() -> None:
    table = SlotTable()
    big = Waiter("big", ("gcl:db",), "run-1", "a1", 3, "_INBOX.big")
    small = Waiter("small", ("gcl:db",), "run-1", "a1", 2, "_INBOX.small")
    limits = {"gcl:db": 4}
    assert table.acquire(big, limits)
    assert not table.acquire(small, limits)  # 3 + 2 > 4
    assert table.active("gcl:db") == 3
    assert [w.holder for w in table.release("big", limits)] == ["small"]
    assert table.active("gcl:db") == 2


def test_rate_limited_slots_drain_at_the_decay_rate() -> None:
    now = [100.0]
    table = SlotTable(clock=lambda: now[0])
    table.decay["gcl:api"] = 2.0  # two slots a second
    limits = {"gcl:api": 2}

    def rate(holder: str) -> Waiter:
        return Waiter(holder, ("gcl:api",), "run-1", "a1", 1, holder, decay=True)

    assert table.acquire(rate("r1"), limits) and table.acquire(rate("r2"), limits)
    assert table.holdings == {}  # a rate limit holds nothing to give back
    assert not table.acquire(rate("r3"), limits)
    assert table.next_drain(limits) == 0.5
    now[0] += 0.5
    assert [w.holder for w in table.grant(limits)] == ["r3"]
    assert table.level("gcl:api") == 2.0
    now[0] += 10
    assert table.level("gcl:api") == 0.0 and table.next_drain(limits) is None


def test_a_table_that_has_not_settled_grants_nothing_until_it_has() -> None:
    now = [0.0]
    table = SlotTable(clock=lambda: now[0])
    table.settle_until(1.5)  # a restarted orchestrator waits for the agents' heartbeats
    assert not table.acquire(waiter("t1", "db"), LIMITS)
    table.adopt(Holding("old", ("db",), "run-0", "a1"))  # reported by a heartbeat meanwhile
    assert table.next_drain(LIMITS) == 1.5
    assert table.grant(LIMITS) == []
    now[0] = 2.0
    assert [w.holder for w in table.grant(LIMITS)] == ["t1"]
    assert table.active("db") == 2  # the adopted holding counts: no third
    assert not table.acquire(waiter("t2", "db"), LIMITS)


def test_a_waiter_queued_as_the_table_settles_is_served_by_one_pass() -> None:
    """A request that came just before the table settled is not left queued (the race that
    stalled slot grants): ``next_drain`` asks for one grant pass at once, then for none."""
    now = [0.0]
    table = SlotTable(clock=lambda: now[0])
    table.settle_until(1.0)
    assert not table.acquire(waiter("t1", "db"), LIMITS)
    now[0] = 1.0  # settled before anyone armed a timer
    assert table.next_drain(LIMITS) == 0.0
    assert [w.holder for w in table.grant(LIMITS)] == ["t1"]
    assert table.next_drain(LIMITS) is None
    assert table.acquire(waiter("t2", "db"), LIMITS)
    assert not table.acquire(waiter("t3", "db"), LIMITS)  # the limit, not the settling
    assert table.next_drain(LIMITS) is None  # nothing to wait for but a release
