"""Help is the first documentation a CLI user reads: each command's one-line help in
``flowbus --help`` and in its group's is whole sentences, no two commands say the same, and no
literal backquotes or ``<bool>`` labels show."""

from __future__ import annotations

import os
import subprocess
import sys

from flowbus.cli.app import COMMANDS


def help_of(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-m", "flowbus", *args, "--help"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def listed(text: str) -> dict[str, str]:
    """The Commands box: each command's help, its wrapped lines joined."""
    rows: dict[str, str] = {}
    inside, last = False, None
    for line in text.splitlines():
        if "Commands" in line and line.startswith("╭"):
            inside = True
            continue
        if inside and line.startswith("╰"):
            break
        if inside:
            body = line.strip("│ ").rstrip()
            name, _, rest = body.partition(" ")
            if line[2] != " " and name:
                rows[name] = rest.strip()
                last = name
            elif last is not None:
                rows[last] += " " + body.strip()
    return rows


def test_root_and_group_help_is_clean_sentences() -> None:
    root = help_of()
    rows = listed(root)
    assert set(rows) >= {name for name, c in COMMANDS.items() if not c.hidden}
    helps = list(rows.values())
    assert len(set(helps)) == len(helps), "two commands with the same help"
    for group in ("runs", "store", "webhook", "deployments", "agents", "agent"):
        text = help_of(group)
        for name, line in listed(text).items():
            assert line.endswith((".", ")")), (group, name, line)
            assert "``" not in line and "<bool>" not in text, (group, name, line)
