"""The CLI: its --json shapes (documented in docs/cli.md) and its errors."""

from __future__ import annotations

from pathlib import Path

import flowbus

from .conftest import Shell

JOB = """
from flowbus import flow, task, get_run_logger

@task(retries=1, retry_delay_seconds=0)
def shaky(attempts: list) -> int:
    attempts.append(1)
    if len(attempts) == 1:
        raise ValueError("first attempt fails")
    return len(attempts)

@task
def broken() -> None:
    raise RuntimeError("always broken")

@flow
def child() -> str:
    return "ok"

@flow(name="cli-job")
def job(fail: bool = False) -> int:
    get_run_logger().info("working", fail=fail)
    child()
    if fail:
        broken()
    return shaky([])

job()
job(fail=True, return_state=True)
"""


def test_runs_ls_show_logs_json(shell: Shell, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    shell.run(str(script))

    runs = shell.flowbus_json("runs", "ls", "--flow", "cli-job")["runs"]
    assert [r["state_type"] for r in runs] == ["FAILED", "COMPLETED"]  # newest first
    failed, done = runs
    assert set(done) >= {
        "id",
        "flow_name",
        "name",
        "parameters",
        "state_type",
        "state_name",
        "created",
        "started",
        "ended",
        "run_count",
        "result_summary",
        "tags",
    }
    assert [r["id"] for r in shell.flowbus_json("runs", "ls", "--state", "failed")["runs"]] == [
        failed["id"]
    ]
    assert len(shell.flowbus_json("runs", "ls", "--limit", "1")["runs"]) == 1

    # Readable in an 80-column terminal: every column there, names whole, ids as prefixes
    # that other commands take.
    shell.env["COLUMNS"] = "80"
    table = shell.flowbus("runs", "ls", "--flow", "cli-job").stdout.splitlines()
    shell.env["COLUMNS"] = "200"
    assert all(len(line) <= 80 for line in table), table
    assert table[0].split() == ["ID", "FLOW", "NAME", "STATE", "STARTED", "DURATION"]
    for run, line in zip(runs, table[1:], strict=True):
        short, flow_name, name, state = line.split()[:4]
        assert run["id"].startswith(short) and len(short) < len(run["id"])
        assert (flow_name, name, state) == ("cli-job", run["name"], run["state_name"])
        assert shell.flowbus_json("runs", "show", short)["id"] == run["id"]

    stats = shell.flowbus_json("runs", "stats", "--hours", "3")
    assert len(stats["hours"]) == 3
    assert stats["totals"]["FAILED"] == 1 and stats["totals"]["COMPLETED"] >= 2  # + the child
    in_hours = sum(n for hour in stats["hours"] for n in hour["counts"].values())
    assert in_hours == sum(stats["totals"].values())
    assert [r["id"] for r in stats["recent_failures"]] == [failed["id"]]
    assert "Latest failures" in shell.flowbus("runs", "stats").stdout

    detail = shell.flowbus_json("runs", "show", failed["id"][:30])
    assert detail["id"] == failed["id"]
    assert detail["error"] and "RuntimeError: always broken" in detail["error"]
    assert [s["flow_name"] for s in detail["subflow_runs"]] == ["child"]
    broken = next(t for t in detail["task_runs"] if t["name"] == "broken-0")
    assert broken["state_type"] == "FAILED" and broken["duration_seconds"] is not None

    ok = shell.flowbus_json("runs", "show", done["id"])
    shaky = next(t for t in ok["task_runs"] if t["name"] == "shaky-0")
    assert shaky["retries"] == 1

    logs = shell.flowbus_json("runs", "logs", done["id"])["logs"]
    assert logs[0]["message"] == "working fail=False"
    assert set(logs[0]) == {
        "run_id",
        "seq",
        "task_run_id",
        "timestamp",
        "level",
        "logger",
        "message",
    }

    table = shell.flowbus("runs", "show", failed["id"]).stdout
    assert "State history" in table and "broken-0" in table


def test_cli_errors_are_clear_and_non_zero(shell: Shell) -> None:
    missing = shell.flowbus("runs", "show", "no-such-run", check=False)
    assert missing.returncode == 1
    assert "no flow run matches 'no-such-run'" in missing.stderr

    shell.env["FLOWBUS_NATS_URL"] = "nats://127.0.0.1:1"  # nothing listens there
    no_nats = shell.flowbus("queues", "ls", check=False)
    assert no_nats.returncode == 1
    assert "cannot connect to NATS at nats://127.0.0.1:1" in no_nats.stderr
    assert "Traceback" not in no_nats.stderr
    del shell.env["FLOWBUS_NATS_URL"]

    bad_state = shell.flowbus("runs", "ls", "--state", "sleepy", check=False)
    assert bad_state.returncode == 1
    assert "unknown state 'sleepy'" in bad_state.stderr


def test_version_and_store_commands(shell: Shell) -> None:
    assert shell.flowbus("version").stdout.strip() == flowbus.__version__
    assert "rebuilt projections from 0 events" in shell.flowbus("store", "rebuild").stdout
    assert shell.flowbus("store", "verify").returncode == 0


def test_a_bad_store_url_is_a_clear_error(shell: Shell) -> None:
    shell.env["FLOWBUS_STORE_URL"] = "mysql://nowhere/db"
    done = shell.flowbus("runs", "ls", check=False)
    assert done.returncode == 1
    assert "unsupported store URL scheme 'mysql'" in done.stderr


def test_a_bad_setting_stops_a_daemon_at_once_naming_the_variable(shell: Shell) -> None:
    for variable, value, command in [
        ("FLOWBUS_LEASE_SECONDS", "soon", ("server", "start")),
        ("FLOWBUS_AGENT_GRACE_SECONDS", "-3", ("agent", "start")),
        ("FLOWBUS_SQLITE_SYNCHRONOUS", "sometimes", ("up",)),
    ]:
        shell.env[variable] = value
        try:
            done = shell.flowbus(*command, check=False)
        finally:
            del shell.env[variable]
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert variable in " ".join(done.stderr.split()), done.stderr
