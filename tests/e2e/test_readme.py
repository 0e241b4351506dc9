"""Every shell command of README.md and docs/cli.md, run as written, in the order written, in a
fresh home with the stack up, offline: each exits as the text says (0, or 2 where it says
"refused").

What is filled in, and why: the README's ``https://example.org/iris.csv`` becomes the same CSV
served on loopback (no internet here); ``RUN_ID`` becomes a run of the kind the command needs
(a running one to cancel, a paused one to resume, a cancelled one to retry, a completed one for
its result), made just before; ``flowbus deploy ...`` (the README's "as above") becomes the
last deploy above it; ``automations.yaml`` is docs/cli.md's example file. ``flowbus up`` runs in the
background, as the README's "in another terminal" means. ``make demo`` and ``make test`` are
tested elsewhere (``test_stack_cli.py`` runs the demo's script; ``make test`` is this suite).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .conftest import ROOT
from .test_up import Up

DOCS = (ROOT / "README.md", ROOT / "docs" / "cli.md")
EXAMPLE_URL = "https://example.org/iris.csv"
RUN_ID = re.compile(r"<RUN_ID>|\bRUN_ID\b")
#: Commands the README shows that this test does not run, and where they are tested.
ELSEWHERE = {
    "make demo": "tests/e2e/test_stack_cli.py runs the demo's script",
    "make test": "the suite this test is part of",
}
LISTINGS = ("runs ls", "deployments ls", "queues ls", "agents ls", "schedule ls")
APPROVAL_FLOW = ROOT / "tests" / "integration" / "agent_flows" / "flows.py"


def shell_commands(path: Path) -> list[str]:
    """The commands of a document's ``bash`` blocks, continued lines joined."""
    commands: list[str] = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", path.read_text(), re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                commands.append(command.strip())
    return commands


def example_file(path: Path, starts: str) -> str:
    """The first ``yaml`` block of a document that starts with ``starts``."""
    for block in re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S):
        if block.startswith(starts):
            return str(block)
    raise AssertionError(f"{path.name} shows no yaml block starting {starts!r}")


@contextmanager
def csv_server() -> Iterator[tuple[str, str, threading.Event]]:
    """The bundled iris.csv on loopback, and a slow copy that answers once released."""
    release = threading.Event()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/slow/"):
                release.wait(60)
                self.path = self.path.removeprefix("/slow")
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            return None

    handler = functools.partial(Handler, directory=str(ROOT / "examples" / "data"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield f"{base}/iris.csv", f"{base}/slow/iris.csv", release
    finally:
        release.set()
        server.shutdown()
        server.server_close()


class Reader:
    """A user at a shell: the venv activated, a fresh home, the examples at hand."""

    def __init__(self, workdir: Path, home: Path, iris: str, slow: str) -> None:
        self.workdir, self.home, self.iris, self.slow = workdir, home, iris, slow
        venv = Path(sys.executable).parent.parent  # `source .venv/bin/activate`, in effect
        self.env = {**os.environ, "FLOWBUS_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "80",
                    "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
                    "FLOWBUS_AGENT_GRACE_SECONDS": "1"}  # fmt: skip
        for name in ("FLOWBUS_NATS_URL", "FLOWBUS_STORE_URL", "FLOWBUS_API_URL",
                     "FLOWBUS_API_TOKEN", "FLOWBUS_PROFILE"):  # fmt: skip
            self.env.pop(name, None)
        self.up: Up | None = None
        self.runs: dict[str, str] = {}

    def sh(self, command: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-ec", command], cwd=self.workdir, env=self.env,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def json(self, command: str) -> Any:
        done = self.sh(command)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
        return json.loads(done.stdout)

    def state(self, run_id: str) -> str:
        return str(self.json(f"flowbus runs show {run_id} --json")["state_name"])

    def until_state(self, run_id: str, *states: str) -> None:
        deadline = time.monotonic() + 120
        while (now := self.state(run_id)) not in states:
            assert time.monotonic() < deadline, f"run {run_id} is {now}, not {states}"
            time.sleep(0.5)

    def run_count(self) -> int:
        return len(self.json("flowbus runs ls --limit 1000 --json")["runs"])

    def start_stack(self) -> None:
        self.up = Up(self.home, "--port", "0", cwd=self.workdir,
                     env={"FLOWBUS_AGENT_GRACE_SECONDS": "1"})  # fmt: skip
        self.up.read_until("flowbus is up", timeout=90)
        # A run parked by pause_flow_run(wait_for_input=...), for `flowbus runs resume`.
        self.sh(f"flowbus deploy {APPROVAL_FLOW}:needs_approval -n readme -q default")
        paused = self.json("flowbus run needs-approval/readme --json")["run_id"]
        self.until_state(paused, "Paused", "Suspended")
        self.runs["resume"] = paused

    def run_for(self, command: str) -> str:
        """The run a ``RUN_ID`` of this command means."""
        if " cancel " in command:
            started = self.json(f"flowbus run etl-flow/daily -p url={self.slow} --json")["run_id"]
            self.until_state(started, "Running")
            self.runs["retry"] = started
            return str(started)
        if " resume " in command:
            return self.runs["resume"]
        if " retry " in command:
            self.until_state(self.runs["retry"], "Cancelled")
            return self.runs["retry"]
        if " result " in command:
            done = self.json("flowbus runs ls --flow etl-flow --state completed --json")["runs"]
            return str(done[0]["id"])
        return str(self.json("flowbus runs ls --limit 1 --json")["runs"][0]["id"])

    def fill_in(self, command: str, deployed: list[str]) -> str:
        command = command.replace(EXAMPLE_URL, self.iris)
        if command.startswith("flowbus deploy ... "):  # "the deploy above, and ..."
            command = command.replace("...", deployed[-1].removeprefix("flowbus deploy "), 1)
        if RUN_ID.search(command):
            command = RUN_ID.sub(self.run_for(command), command)
        return command

    def follow(self, written: str, deployed: list[str]) -> None:
        """Run one command as written (filled in), and check it exits as the text says."""
        command = self.fill_in(written, deployed)
        if command.startswith("flowbus deploy "):
            deployed.append(command.split("#")[0].strip())
        refused = "# refused" in command
        runs_before = self.run_count() if refused else 0
        done = self.sh(command)
        said = f"{written}\n-> {command}\nexit {done.returncode}\n{done.stdout}{done.stderr}"
        if refused:
            assert done.returncode == 2, said
            assert self.run_count() == runs_before, "a refused run was queued: " + said
        else:
            assert done.returncode == 0, said
        if "--watch" in command:
            assert "Completed" in done.stdout, said

    def close(self) -> None:
        if self.up is not None:
            self.up.kill()


def test_every_shell_command_of_the_docs_exits_as_written(tmp_path: Path) -> None:
    workdir = tmp_path / "clone"
    workdir.mkdir()
    (workdir / "examples").symlink_to(ROOT / "examples")
    (workdir / ".venv").symlink_to(Path(sys.executable).parent.parent)  # the clone's venv
    (workdir / "automations.yaml").write_text(example_file(DOCS[1], "name: raw-file-to-etl"))
    commands = [c for doc in DOCS for c in shell_commands(doc)]
    assert len(commands) > 25, commands
    skipped = [c for c in commands if c.split("#")[0].strip() in ELSEWHERE]
    assert sorted(c.split("#")[0].strip() for c in skipped) == sorted(ELSEWHERE)

    with csv_server() as (iris, slow, release):
        reader = Reader(workdir, tmp_path / "home", iris, slow)
        deployed: list[str] = []
        try:
            for written in commands:
                if written == "flowbus up":
                    reader.start_stack()
                elif written not in skipped:
                    reader.follow(written, deployed)
                if " cancel " in written:
                    release.set()  # the cancelled run's download returns; its thread ends
            # Tables read in 80 columns (the terminal the issue of a new user's first hour had).
            for listing in LISTINGS:
                table = reader.sh(f"flowbus {listing}").stdout.splitlines()
                print(f"$ flowbus {listing}", *table, sep="\n")
                assert len(table) > 1 and all(len(line) <= 80 for line in table), table
        finally:
            reader.close()

    assert len((workdir / "out" / "iris.csv").read_text().splitlines()) == 151
    assert len((workdir / "out" / "daily.csv").read_text().splitlines()) == 151
