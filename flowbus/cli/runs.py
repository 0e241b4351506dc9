"""``flowbus runs``: list flow runs, show one, read its logs."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer
from rich.table import Table

from flowbus.cli.common import (
    console,
    err_console,
    fail,
    format_seconds,
    listed_time,
    listing,
    print_json,
    resolve_run,
    short_time,
    styled_state,
    with_store,
)
from flowbus.engine.results import ResultMissing, ResultUncheckable, read_output
from flowbus.engine.states import STATE_NAMES, StateType
from flowbus.engine.store import EventStore
from flowbus.remote.store import ApiStore
from flowbus.views.run_detail import duration, run_detail, stored_run_result
from flowbus.views.stats import run_activity

app = typer.Typer(help="Inspect flow runs.", no_args_is_help=True)


def _state_filter(value: str | None) -> str | None:
    """Accept a state type (failed, COMPLETED) or a state name (Late, Cached), any case."""
    if value is None:
        return None
    if value.upper() in StateType.__members__:
        return value.upper()
    for name in STATE_NAMES:
        if name.lower() == value.lower():
            return name
    known = ", ".join(sorted({*StateType.__members__, *STATE_NAMES}))
    fail(f"unknown state {value!r}; use one of: {known}")


@app.command("ls")
def list_runs(
    state: Annotated[str | None, typer.Option(help="Only runs in this state type or name.")] = None,
    flow: Annotated[str | None, typer.Option(help="Only runs of this flow.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """List flow runs, newest first."""
    state_filter = _state_filter(state)

    async def fetch(store: EventStore) -> tuple[list[Any], dict[str, str]]:
        found = await store.list_flow_runs(state=state_filter, flow_name=flow, limit=limit)
        shown = {} if as_json else await unique_prefixes(store, [run.id for run in found])
        return found, shown

    runs, ids = with_store(fetch)
    if as_json:
        print_json({"runs": [run.to_dict() for run in runs]})
        return
    # Readable in 80 columns: ids as their shortest prefix unique here (every command takes
    # a prefix; --json has them whole), start times in few characters on a narrow terminal,
    # no padding at the table's edges, names folded only when they must be.
    table = listing("ID", "FLOW", "NAME", "STATE", "STARTED", "DURATION",
                    whole=("ID", "STATE", "STARTED", "DURATION"))  # fmt: skip
    for run in runs:
        table.add_row(
            ids[run.id],
            run.flow_name,
            run.name,
            styled_state(run.state_type, run.state_name),
            listed_time(run.started),
            format_seconds(duration(run.started, run.ended)),
        )
    console.print(table if runs else "[dim]no flow runs[/]")


async def unique_prefixes(store: EventStore, ids: list[str], shortest: int = 10) -> dict[str, str]:
    """Each id's shortest prefix (``shortest`` characters at least) that no other run in the
    store shares, so ``runs show PREFIX`` finds it (run ids begin with their creation time:
    runs made together share more of it)."""
    found = {}
    for run_id in ids:
        length = shortest
        while length < len(run_id) and any(
            other != run_id and other.startswith(run_id[:length]) for other in ids
        ):
            length += 1
        while length < len(run_id) and len(await store.find_flow_runs(run_id[:length])) > 1:
            length += 1
        found[run_id] = run_id[:length]
    return found


def _activity_table(activity: dict[str, Any], states: list[str]) -> Table:
    table = Table(box=None, header_style="bold")
    table.add_column("HOUR (UTC)", no_wrap=True)
    for state in states:
        table.add_column(state, justify="right")
    for hour in activity["hours"]:
        table.add_row(hour["hour"][:13], *(str(hour["counts"].get(s, 0)) for s in states))
    table.add_row("total", *(str(activity["totals"][s]) for s in states), style="bold")
    return table


@app.command("stats")
def run_stats(
    hours: Annotated[int, typer.Option(min=1, max=168, help="How many hours back.")] = 24,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """Runs created per hour lately, by current state, and the latest failures."""

    async def fetch(store: EventStore) -> dict[str, Any]:
        if isinstance(store, ApiStore):  # counted by the server
            return await store.run_activity(hours)
        return await run_activity(store, hours)

    activity = with_store(fetch)
    if as_json:
        print_json(activity)
        return
    states = sorted(activity["totals"])
    if not states:
        console.print(f"[dim]no flow runs created in the last {hours} hours[/]")
    else:
        console.print(_activity_table(activity, states))
    if activity["recent_failures"]:
        console.print("\n[bold]Latest failures[/]")
        for run in activity["recent_failures"]:
            state = styled_state(run["state_type"], run["state_name"])
            console.print(
                f"  {run['id']}  {run['flow_name']}  {state}  {run['state_message'] or ''}"
            )


@app.command("show")
def show_run(
    run_id: Annotated[str, typer.Argument(help="Flow run id (or a unique prefix).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """Show a flow run: its state history, task runs with retries and durations, subflows."""

    async def fetch(store: EventStore) -> dict[str, Any]:
        return await run_detail(store, await resolve_run(store, run_id))

    detail = with_store(fetch)
    if as_json:
        print_json(detail)
        return
    _print_detail(detail)


def _print_detail(detail: dict[str, Any]) -> None:
    console.print(
        f"[bold]{detail['flow_name']}[/] / {detail['name']}  "
        f"{styled_state(detail['state_type'], detail['state_name'])}  [dim]{detail['id']}[/]"
    )
    if detail["parameters"]:
        console.print(f"parameters: {detail['parameters']}")
    if detail["parent_run_id"]:
        console.print(f"parent run: {detail['parent_run_id']}")
    console.print(f"duration: {format_seconds(detail['duration_seconds'])}")
    if detail["result_summary"] is not None:
        console.print(f"result: {detail['result_summary']}")
    if detail["code_hash"]:
        console.print(f"code: sha256 {detail['code_hash'][:12]}")
    console.print()
    history = Table(title="State history", box=None, header_style="bold", title_justify="left")
    for column in ("TIME", "STATE", "MESSAGE"):
        history.add_column(column)
    for entry in detail["state_history"]:
        history.add_row(
            entry["timestamp"], styled_state(entry["type"], entry["name"]), entry["message"] or ""
        )
    console.print(history)
    tasks = Table(title="\nTask runs", box=None, header_style="bold", title_justify="left")
    for column in ("ATTEMPT", "NAME", "STATE", "RETRIES", "DURATION", "MESSAGE"):
        tasks.add_column(column)
    for task_run in detail["task_runs"]:
        tasks.add_row(
            str(task_run["attempt"] or "-"),
            task_run["name"],
            styled_state(task_run["state_type"], task_run["state_name"]),
            str(task_run["retries"]),
            format_seconds(task_run["duration_seconds"]),
            task_run["state_message"] or "",
        )
    console.print(tasks if detail["task_runs"] else "\n[dim]no task runs[/]")
    for sub in detail["subflow_runs"]:
        console.print(
            f"subflow: {sub['flow_name']} / {sub['name']} {sub['state_name']} {sub['id']}"
        )
    if detail["artifacts"]:
        _print_artifacts(detail["artifacts"])
    if detail["error"]:
        console.print(f"\n[red]{detail['error']}[/]")


def _print_artifacts(artifacts: list[dict[str, Any]]) -> None:
    table = Table(title="\nArtifacts", box=None, header_style="bold", title_justify="left")
    for column in ("KEY", "TYPE", "DESCRIPTION", "DATA"):
        table.add_column(column)
    for artifact in artifacts:
        data = artifact["data"]
        shown = f"{data:g}%" if artifact["type"] == "progress" else str(data)
        table.add_row(artifact["key"] or "-", artifact["type"], artifact["description"] or "",
                      shown if len(shown) <= 80 else shown[:77] + "...")  # fmt: skip
    console.print(table)


@app.command("result")
def run_result_command(
    run_id: Annotated[str, typer.Argument(help="Flow run id (or a unique prefix).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """Print a Completed run's result: its JSON value (or, for a result that is not JSON, the
    value read from result storage); ``--json`` prints where it is stored and its summary too."""

    async def fetch(store: EventStore) -> dict[str, Any]:
        run = await resolve_run(store, run_id)
        if run.state_type != StateType.COMPLETED:
            fail(f"run {run.name} is {run.state_name}: it has no result")
        return await stored_run_result(store, run)

    found = with_store(fetch)
    if as_json:
        print_json(found)
    elif found["result_ref"] is None:
        print_json(found["result"])
    else:
        try:
            console.print(repr(read_output(found["result_ref"])), highlight=False)
        except ResultUncheckable as exc:
            if found["result"] is None:
                fail(str(exc))
            err_console.print(f"{exc}; its JSON rendering:")
            print_json(found["result"])
        except ResultMissing as exc:
            fail(str(exc))


@app.command("logs")
def run_logs(
    run_id: Annotated[str, typer.Argument(help="Flow run id (or a unique prefix).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """Print a flow run's log lines, oldest first."""

    async def fetch(store: EventStore) -> list[Any]:
        run = await resolve_run(store, run_id)
        lines: list[Any] = []
        after = 0
        while True:
            page = await store.get_logs(run.id, after_seq=after, limit=1000)
            if not page:
                return lines
            lines += page
            after = page[-1].seq

    lines = with_store(fetch)
    if as_json:
        print_json({"logs": [line.to_dict() for line in lines]})
        return
    for line in lines:
        level = logging.getLevelName(line.level)
        console.print(f"{short_time(line.timestamp)} | {level:<7} | {line.message}", markup=False)


@app.command("cancel")
def cancel_run(
    run_ref: Annotated[str, typer.Argument(help="Run id (or a unique prefix of it).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """Cancel a run: a queued one at once, a running one through Cancelling."""
    from flowbus.cli.common import with_client
    from flowbus.client import Client

    run_id = _run_id(run_ref)

    async def main(client: Client) -> str:
        return await client.cancel(run_id)

    state = with_client(main)
    if state not in ("Cancelled", "Cancelling"):  # it had ended: there was nothing to cancel
        fail(f"run {run_id} already ended {state}: nothing to cancel")
    _print_state(run_id, state, as_json)


@app.command("resume")
def resume_run(
    run_ref: Annotated[str, typer.Argument(help="Run id (or a unique prefix of it).")],
    input_json: Annotated[
        str | None, typer.Option("--input", help="The input the pause waits for, as JSON.")
    ] = None,
    field: Annotated[
        list[str] | None, typer.Option("--field", "-f", help="One input field name=value.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """Resume a Paused run: it is queued again, and its pause returns the input given."""
    import json

    from flowbus.cli.common import with_client
    from flowbus.cli.deployments import parse_params
    from flowbus.client import Client

    run_id = _run_id(run_ref)
    given: dict[str, Any] | None = None
    if input_json is not None:
        try:
            given = json.loads(input_json)
        except ValueError as exc:
            fail(f"--input is not JSON: {exc}", code=2)
        if not isinstance(given, dict):
            fail("--input must be a JSON object", code=2)
    if field:
        given = {**(given or {}), **parse_params(field)}

    async def main(client: Client) -> str:
        return await client.resume(run_id, given)

    _print_state(run_id, with_client(main), as_json)


@app.command("retry")
def retry_run(
    run_ref: Annotated[str, typer.Argument(help="Run id (or a unique prefix of it).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """Queue a Failed, Crashed, Cancelled or TimedOut run again, as a new attempt of the same
    run (its crash budget starts over)."""
    from flowbus.cli.common import with_client
    from flowbus.client import Client

    run_id = _run_id(run_ref)

    async def main(client: Client) -> str:
        return await client.retry(run_id)

    _print_state(run_id, with_client(main), as_json)


def _run_id(run_ref: str) -> str:
    """A full run id as given, or the run a unique prefix names."""
    return run_ref if len(run_ref) == 36 else with_store(lambda s: resolve_run(s, run_ref)).id


def _print_state(run_id: str, state: str, as_json: bool) -> None:
    """What an orchestrator request about a run answered: the run's state."""
    if as_json:
        print_json({"run_id": run_id, "state": state})
    else:
        console.print(f"run {run_id}: {state}")
