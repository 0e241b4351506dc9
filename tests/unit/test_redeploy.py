"""A redeploy keeps what it does not say (flowbus/cli/redeploy.py)."""

from __future__ import annotations

from typing import Any

from flowbus.cli.redeploy import Given, settle
from flowbus.engine.schedules import CronSchedule, DeploymentSchedule
from flowbus.engine.store import DeploymentView

DAILY = DeploymentSchedule(id=1, schedule=CronSchedule(cron="0 6 * * *"))


def version(**changes: Any) -> DeploymentView:
    fields: dict[str, Any] = {
        "id": "d", "name": "etl-flow/daily", "flow_name": "etl-flow", "deployment_name": "daily",
        "entrypoint": "etl.py:etl_flow", "working_dir": ".", "queue": "default",
        "parameters": {}, "parameter_schema": {}, "tags": [], "description": None,
        "created": "", "updated": "", "version": 1,
        "schedules": [DAILY.model_dump(mode="json")], "catchup": "none", "overlap": "skip",
        "concurrency_limit": None, "collision": "enqueue",
    }  # fmt: skip
    return DeploymentView(**{**fields, **changes})


def test_what_a_redeploy_does_not_say_is_kept_and_said() -> None:
    settled = settle(version(), Given(concurrency_limit=1))
    assert settled.schedules == [DAILY] and settled.concurrency_limit == 1
    assert (settled.catchup, settled.overlap) == ("none", "skip")
    assert settled.kept == ["1 schedule"]
    again = settle(version(concurrency_limit=1, collision="cancel"), Given())
    assert again.concurrency_limit == 1 and again.collision == "cancel"
    assert again.kept == ["1 schedule", "concurrency limit 1"]


def test_what_a_redeploy_says_replaces_and_removes() -> None:
    cleared = settle(version(concurrency_limit=2), Given(schedules=[], concurrency_limit=0))
    assert cleared.schedules == [] and cleared.concurrency_limit is None and cleared.kept == []
    first = settle(None, Given())
    assert (first.schedules, first.catchup, first.overlap, first.collision) == (
        [], "latest", "allow", "enqueue"
    )  # fmt: skip
