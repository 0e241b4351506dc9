"""``flowbus run``: submit a run of a deployment, and optionally watch it live."""

from __future__ import annotations

import contextlib
import logging
from typing import Annotated, Any

import typer
from rich.status import Status

from flowbus.cli.common import console, print_json, short_time, styled_state, with_client
from flowbus.cli.deployments import parse_params
from flowbus.client import Client, FinalState
from flowbus.engine.events import FlowRunCreated, FlowRunStateChanged, LogEmitted, TaskRunCreated
from flowbus.engine.states import StateType


def run(
    deployment: Annotated[str, typer.Argument(help='"flow-name/deployment-name"')],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Parameter name=value (JSON values).")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Follow states and logs until the run ends.")
    ] = False,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="The same key gives the same run.")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="A tag.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli.md).")] = False,
) -> None:
    """Submit a run of a deployment; with --watch, exit non-zero unless it completes."""
    parameters = parse_params(param or [])

    async def main(client: Client) -> FinalState | None:
        submitted = await client.submit(
            deployment, parameters, idempotency_key=idempotency_key, tags=tag or []
        )
        if as_json and not watch:
            print_json(submitted.__dict__)
            return None
        if not as_json:
            again = "" if submitted.created else " (submitted before with this key)"
            console.print(
                f"run [bold]{submitted.name}[/] {submitted.run_id} queued on "
                f"{submitted.queue}{again}"
            )
        if not watch:
            return None
        final = await _watch(client, submitted.run_id, quiet=as_json)
        if as_json:
            print_json({**submitted.__dict__, "state": final.name, "state_type": final.type.value,
                        "message": final.message, "result": final.result})  # fmt: skip
        return final

    final = with_client(main)
    if final is not None and not final.completed:
        raise typer.Exit(1)


def _print_state(state: Any, logged: str) -> None:
    """A state change as ``--watch`` shows it, with a failure's traceback unless a log line of
    the run (a task's "Finished in state Failed") showed the error's traceback already."""
    when = short_time(state.timestamp.isoformat())
    message = f"  {state.message}" if state.message else ""
    console.print(f"{when}  {styled_state(state.type.value, state.name)}{message}")
    if state.type is StateType.FAILED and state.traceback:
        if logged:
            console.print("  (its traceback is above; flowbus runs show has it whole)",
                          style="dim")  # fmt: skip
        else:
            console.print(state.traceback, markup=False, style="red")


async def _watch(client: Client, run_id: str, quiet: bool) -> FinalState:
    """Print the run's state changes and log lines as they happen; return its final state."""
    status: Status | None = None if quiet else console.status("waiting for the run...")
    if status is not None:
        status.start()
    last: FinalState | None = None
    task_runs = 0
    logged = ""  # the tracebacks the run's log lines showed
    try:
        async with contextlib.aclosing(client.events(run_id=run_id)) as events:
            async for event in events:
                if isinstance(event, FlowRunCreated | FlowRunStateChanged):
                    state = event.state
                    result = getattr(event, "result", None)
                    last = FinalState(run_id, state.type, state.name, state.message, result)
                    if not quiet:
                        _print_state(state, logged)
                    if await client.ends_run(event):
                        break
                    if status is not None:
                        status.update(f"{state.name} ... {task_runs} task runs so far")
                elif isinstance(event, TaskRunCreated):
                    task_runs += 1
                    if status is not None and last is not None:
                        status.update(f"{last.name} ... {task_runs} task runs so far")
                elif isinstance(event, LogEmitted) and not quiet:
                    if "Traceback" in event.message:
                        logged += event.message
                    level = logging.getLevelName(event.level)
                    console.print(f"    {level:<8} {event.message}", markup=False, style="dim")
    finally:
        if status is not None:
            status.stop()
    assert last is not None
    return last
