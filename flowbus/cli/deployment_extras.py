"""What ``flowbus deploy`` records beside a deployment: its triggers (prefect.yaml) and its own
retention (``--retention-days``)."""

from __future__ import annotations

from functools import partial
from typing import Any

from flowbus.cli.common import console, fail, with_store
from flowbus.cli.deploy_file import DeploymentEntry
from flowbus.engine.deployment_triggers import (
    DeploymentEventTrigger,
    read_triggers,
    replace_triggers,
)
from flowbus.engine.errors import FlowbusError


def set_retention(
    deployment: str,
    days: str | None,
    keep_failed_days: float | None,
    quiet: bool,
    archive: str | None = None,
) -> None:
    """Record the deployment's own retention (``engine/retention.py``), checked first. What is
    not given stays as the deployment had it (a policy needs its days: given, or had)."""
    from flowbus.engine.documents import save_document
    from flowbus.engine.retention import RETENTION, days_from_text, policy_from_days

    async def had(store: Any) -> dict[str, Any]:
        found = await store.get_document(RETENTION, deployment)
        return found.body if found is not None and isinstance(found.body, dict) else {}

    before = with_store(had)
    if days is None and "days" not in before:
        fail("give --retention-days (a number of days, or 'forever') with --keep-failed-days "
             "or --archive", code=2)  # fmt: skip
    try:
        number = before.get("days") if days is None else days_from_text(days, "--retention-days")
        failed = before.get("keep_failed_days") if keep_failed_days is None else keep_failed_days
        target = before.get("archive") if archive is None else archive
        policy_from_days(number, failed, target)
    except FlowbusError as exc:
        fail(str(exc), code=2)
    body = {"days": number, "keep_failed_days": failed, "archive": target}
    with_store(partial(save_document, kind=RETENTION, name=deployment, body=body))
    if not quiet:
        kept = "kept forever" if number is None else f"pruned {number:g} days after they end"
        where = f", archived to {target} first" if target and number is not None else ""
        console.print(f"  its finished runs are {kept}{where}", markup=False)


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
