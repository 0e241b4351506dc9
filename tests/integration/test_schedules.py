"""Schedules against a real nats-server, real processes and a real SQLite store: runs made
ahead of time once per slot whatever runs the scheduler, catch-up after downtime, overlap
policies, pause and resume, backfill, Late."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.stack import Stack, wait_until

FAST_SCHEDULER = {"FLOWBUS_SCHEDULER_INTERVAL": "0.2", "FLOWBUS_LATE_AFTER_SECONDS": "0.5"}


@pytest.fixture
def stack(stack: Stack) -> Stack:
    """The shared stack, its daemons with a fast scheduler and an early Late."""
    stack.env.update(FAST_SCHEDULER)
    return stack


def scheduled_runs(stack: Stack, deployment: str) -> list[dict[str, Any]]:
    """Every run of the deployment with its slot (scheduled_time), from the event log."""

    async def read(store: Any) -> list[dict[str, Any]]:
        runs = await store.list_flow_runs(deployment=deployment, limit=10_000)
        found = []
        for run in runs:
            events = await store.read_stream(run.id)
            created = events[0].data
            states = [e.data["state"]["name"] for e in events if e.type.startswith("flow_run")]
            found.append({
                "id": run.id, "slot": created.get("scheduled_time"), "state": run.state_name,
                "states": states, "message": run.state_message, "tags": run.tags,
            })  # fmt: skip
        return found

    return stack.with_store(read)


def test_two_schedulers_and_a_restart_make_one_run_per_slot(stack: Stack) -> None:
    stack.start_orchestrator()
    stack.start_process("scheduler-2", "scheduler", "start").wait_for("scheduler is serving")
    stack.start_agent("agent-1")
    stack.cli("deploy", "flows.py:quick", "-n", "every-second", "--interval", "1")
    wait_until(
        lambda: (
            sum(r["state"] == "Completed" for r in scheduled_runs(stack, "quick/every-second")) >= 3
        ),
        what="three scheduled runs to complete",
    )
    stack.orchestrator.kill()  # type: ignore[union-attr]
    stack.start_orchestrator()  # its scheduler starts again from the cursors
    done = {r["slot"] for r in scheduled_runs(stack, "quick/every-second")
            if r["state"] == "Completed"}  # fmt: skip
    wait_until(
        lambda: len({r["slot"] for r in scheduled_runs(stack, "quick/every-second")
                     if r["state"] == "Completed"} - done) >= 2,
        what="two more scheduled runs after the restart",
    )  # fmt: skip

    runs = scheduled_runs(stack, "quick/every-second")
    slots = Counter(r["slot"] for r in runs)
    assert all(count == 1 for count in slots.values()), slots.most_common(3)
    for run in runs:
        assert run["tags"] == ["scheduled"]
        # Every run that ended completed once, from its slot's Scheduled.
        if run["state"] == "Completed":
            assert run["states"][0] == "Scheduled" and run["states"].count("Completed") == 1
    # Made ahead, capped: the slots still to come (ones past due may wait for a busy agent).
    now = datetime.now(UTC)
    ahead = [
        r for r in runs if r["state"] == "Scheduled" and datetime.fromisoformat(r["slot"]) > now
    ]
    assert len(ahead) <= 10, ahead


def test_catch_up_policies_after_downtime_and_late_runs(stack: Stack) -> None:
    stack.start_orchestrator({"FLOWBUS_SCHEDULER": "off"})  # the scheduler is down
    for policy in ("all", "latest", "none"):
        stack.cli("deploy", "flows.py:noop", "-n", policy, "--interval", "1", "--catchup", policy)
    time.sleep(4.5)  # about four slots missed
    scheduler = stack.start_process("scheduler", "scheduler", "start")
    scheduler.wait_for("scheduled run made")
    time.sleep(1)  # one pass has made every catch-up run (and some ahead)

    def missed(name: str) -> list[dict[str, Any]]:
        runs = scheduled_runs(stack, f"noop/{name}")
        return [r for r in runs if r["slot"] and r["states"][0] == "Scheduled"
                and "Late" in r["states"]]  # fmt: skip

    # No agent yet: runs whose slot has passed become Late.
    wait_until(lambda: len(missed("latest")) >= 1, what="the latest missed slot to be Late")
    all_missed = missed("all")
    assert len(all_missed) >= 3, all_missed
    assert len(missed("latest")) <= 2  # the latest missed slot, and perhaps one just passed
    assert len(missed("none")) <= 1

    stack.start_agent("agent-1")
    wait_until(
        lambda: all(r["state"] == "Completed" for r in missed("all")), what="late runs to run"
    )


def test_overlap_skip_and_cancel(stack: Stack) -> None:
    stack.start_orchestrator()
    stack.start_agent("agent-1")
    for policy in ("skip", "cancel"):
        stack.cli("deploy", "flows.py:sleepy", "-n", policy, "--interval", "1",
                  "-p", "seconds=2.5", "--overlap", policy)  # fmt: skip
    wait_until(
        lambda: (
            sum("skipped" in (r["message"] or "") for r in scheduled_runs(stack, "sleepy/skip"))
            >= 2
            and sum(r["state"] == "Cancelled" for r in scheduled_runs(stack, "sleepy/cancel")) >= 2
        ),
        timeout=30,
        what="skipped and cancelled runs",
    )
    stack.cli("schedule", "pause", "sleepy/skip")
    stack.cli("schedule", "pause", "sleepy/cancel")

    skip = scheduled_runs(stack, "sleepy/skip")
    skipped = [r for r in skip if "skipped" in (r["message"] or "")]
    assert all(r["states"] == ["Scheduled", "Cancelled"] for r in skipped)  # never started
    assert "overlap policy skip" in skipped[0]["message"]
    # Under cancel, a slot cancels the run still running from the one before: runs are
    # cancelled after they started.
    cancelled = [r for r in scheduled_runs(stack, "sleepy/cancel") if r["state"] == "Cancelled"]
    assert any("Running" in r["states"] for r in cancelled), cancelled


def test_pause_resume_backfill_and_json(stack: Stack) -> None:
    stack.start_orchestrator()
    stack.start_agent("agent-1")
    out = stack.cli("deploy", "flows.py:noop", "-n", "nightly", "--cron", "0 6 * * *",
                    "--timezone", "Europe/Paris", "--json")  # fmt: skip
    assert json.loads(out.stdout)["schedules"][0]["schedule"] == {
        "kind": "cron", "cron": "0 6 * * *", "timezone": "Europe/Paris",
    }  # fmt: skip
    listed = json.loads(stack.cli("schedule", "ls", "--json").stdout)["schedules"]
    assert [(s["deployment"], s["id"], s["active"]) for s in listed] == [("noop/nightly", 1, True)]
    assert listed[0]["next_slot"].endswith(("T05:00:00+00:00", "T04:00:00+00:00"))

    paused = json.loads(stack.cli("schedule", "pause", "noop/nightly", "--json").stdout)
    assert paused["schedules"][0]["active"] is False and paused["schedules"][0]["next_slot"] is None
    assert json.loads(stack.cli("schedule", "resume", "noop/nightly", "-s", "1", "--json").stdout)[
        "schedules"][0]["active"] is True  # fmt: skip
    missing = stack.cli("schedule", "pause", "noop/nightly", "-s", "7", check=False)
    assert missing.returncode == 1 and "has no schedule 7" in missing.stderr

    # Three mornings of a past window (Paris time, a DST change inside: 2026-10-25).
    window = ["--start", "2026-10-24T00:00:00+02:00", "--end", "2026-10-26T23:00:00+01:00"]
    first = json.loads(stack.cli("backfill", "noop/nightly", *window, "--json").stdout)["runs"]
    assert [r["slot"] for r in first] == [
        "2026-10-24T04:00:00+00:00", "2026-10-25T05:00:00+00:00", "2026-10-26T05:00:00+00:00",
    ]  # fmt: skip
    assert all(r["created"] for r in first)
    again = json.loads(stack.cli("backfill", "noop/nightly", *window, "--json").stdout)["runs"]
    assert [r["run_id"] for r in again] == [r["run_id"] for r in first]
    assert not any(r["created"] for r in again)
    for run in first:
        assert stack.final_states(run["run_id"])[-1] == "Completed"

    bad = stack.cli("backfill", "noop/nightly", "--start", "yesterday", "--end", "now",
                    check=False)  # fmt: skip
    assert bad.returncode == 2 and "not an ISO 8601" in bad.stderr
    bad_cron = stack.cli("deploy", "flows.py:noop", "-n", "x", "--cron", "0 25 * * *", check=False)
    assert bad_cron.returncode == 2 and "not a cron expression" in bad_cron.stderr
    unfilled = stack.cli("deploy", "flows.py:needs_input", "-n", "x", "--interval", "60",
                         check=False)  # fmt: skip
    assert unfilled.returncode == 2 and "nobody to give it path" in unfilled.stderr
