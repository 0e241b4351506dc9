"""What ``flowbus deploy`` records beside a deployment: its triggers (prefect.yaml) and its own
retention (``--retention-days``)."""

from __future__ import annotations

from functools import partial

from flowbus.cli.common import console, fail, with_store
from flowbus.cli.deploy_file import DeploymentEntry
from flowbus.engine.deployment_triggers import (
    DeploymentEventTrigger,
    read_triggers,
    replace_triggers,
)
from flowbus.engine.errors import FlowbusError


def set_retention(
    deployment: str, days: str | None, keep_failed_days: float | None, quiet: bool
) -> None:
    """Record the deployment's own retention (``engine/retention.py``), checked first."""
    from flowbus.engine.documents import save_document
    from flowbus.engine.retention import RETENTION, days_from_text, policy_from_days

    try:
        number = days_from_text(days, "--retention-days")
        policy_from_days(number, keep_failed_days)
    except FlowbusError as exc:
        fail(str(exc), code=2)
    body = {"days": number, "keep_failed_days": keep_failed_days}
    with_store(partial(save_document, kind=RETENTION, name=deployment, body=body))
    if not quiet:
        kept = "kept forever" if number is None else f"pruned {number:g} days after they end"
        console.print(f"  its finished runs are {kept}", markup=False)


def checked_triggers(
    entries: list[DeploymentEntry], file: str
) -> dict[str, list[DeploymentEventTrigger]]:
    """Every entry's triggers, checked before any entry is saved (and its entrypoint given)."""
    triggers: dict[str, list[DeploymentEventTrigger]] = {}
    for entry in entries:
        if entry.entrypoint is None:
            fail(f"{file}: deployment {entry.name!r} has no entrypoint", code=2)
        try:
            triggers[entry.name] = read_triggers(entry.triggers)
        except FlowbusError as exc:
            fail(f"{file}: deployment {entry.name!r}: {exc}", code=2)
    return triggers


def set_triggers(deployment: str, triggers: list[DeploymentEventTrigger], quiet: bool) -> bool:
    """Make the deployment's triggers these; True when any was made or removed."""
    made, removed = with_store(partial(replace_triggers, deployment=deployment,
                                       triggers=triggers))  # fmt: skip
    if made and not quiet:
        console.print(f"  triggers: {', '.join(made)}", markup=False)
    if removed and not quiet:
        console.print(f"  triggers removed: {', '.join(removed)}", markup=False)
    return bool(made or removed)


__all__ = ["checked_triggers", "set_retention", "set_triggers"]
