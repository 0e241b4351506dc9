"""The one lifecycle of daemons: open, loops under a TaskGroup, drain while they run, close."""

from __future__ import annotations

import asyncio

import pytest

from flowbus.agents.lifecycle import Daemon, Loop, settle_heap


class Recording(Daemon):
    """A daemon that says what happened to it, in order."""

    name = "recording"

    def __init__(self, fail_open: bool = False, fail_loop: bool = False) -> None:
        super().__init__()
        self.said: list[str] = []
        self.fail_open = fail_open
        self.fail_loop = fail_loop
        self.ticks = 0

    async def open(self) -> None:
        self.said.append("open")
        if self.fail_open:
            raise RuntimeError("cannot bind")

    def loops(self) -> dict[str, Loop]:
        return {"tick": self._tick}

    async def _tick(self) -> None:
        if self.fail_loop:
            raise ValueError("a loop failed")
        while True:
            self.ticks += 1
            await asyncio.sleep(0.01)

    async def drain(self) -> None:
        ticks = self.ticks
        await asyncio.sleep(0.05)
        self.said.append("drain, loops running" if self.ticks > ticks else "drain, loops stopped")

    async def close(self) -> None:
        self.said.append("close")


async def test_a_daemon_drains_while_its_loops_run_then_closes() -> None:
    daemon = Recording()
    await daemon.start()
    await asyncio.sleep(0.05)
    daemon.stop()
    await asyncio.wait_for(daemon.wait(), 5)
    assert daemon.said == ["open", "drain, loops running", "close"]


async def test_a_failing_loop_ends_the_daemon_and_wait_raises_it() -> None:
    daemon = Recording(fail_loop=True)
    await daemon.start()
    with pytest.raises(ValueError, match="a loop failed"):
        await asyncio.wait_for(daemon.wait(), 5)
    assert daemon.said == ["open", "close"] and daemon.stopping


async def test_what_open_took_is_given_back_when_it_fails() -> None:
    daemon = Recording(fail_open=True)
    with pytest.raises(RuntimeError):
        await daemon.start()
    assert daemon.said == ["open", "close"]


async def test_a_part_that_failed_on_its_own_makes_wait_raise() -> None:
    daemon = Recording()
    await daemon.start()
    daemon.fail(KeyError("the leader's work"))
    with pytest.raises(KeyError):
        await asyncio.wait_for(daemon.wait(), 5)
    assert daemon.said[-1] == "close"


class Stubborn(Daemon):
    """A loop that swallows the first cancel, as ``asyncio.wait_for`` can in Python 3.11 when
    what it waits for completes just as it is cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.swallowed = 0

    def loops(self) -> dict[str, Loop]:
        return {"stubborn": self._loop}

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if self.swallowed:
                    raise
                self.swallowed += 1
                asyncio.current_task().uncancel()  # type: ignore[union-attr]


async def test_a_loop_that_swallowed_its_cancel_is_cancelled_again() -> None:
    daemon = Stubborn()
    await daemon.start()
    await asyncio.sleep(0.01)
    daemon.stop()
    await asyncio.wait_for(daemon.wait(), 10)  # it hung here before
    assert daemon.swallowed == 1


def test_a_serving_daemons_heap_is_frozen_so_a_full_collection_skips_it() -> None:
    import gc

    loaded = [{"a module's object": n} for n in range(10_000)]  # what starting loaded
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(loaded)
        assert not any(o is loaded for o in gc.get_objects(generation=2))
    finally:
        gc.unfreeze()
