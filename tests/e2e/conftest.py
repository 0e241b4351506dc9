"""Helpers for end-to-end tests: run the CLI and the examples as separate processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


class Shell:
    """Runs commands with one isolated $FLOWBUS_HOME, as a user's shell would."""

    def __init__(self, home: Path) -> None:
        self.env = {**os.environ, "FLOWBUS_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
        self.env.pop("FLOWBUS_STORE_URL", None)

    def run(
        self, *args: str, check: bool = True, timeout: float = 120, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, *args],
            env=self.env,
            cwd=cwd or ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def flowbus(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "flowbus", *args, check=check)

    def flowbus_json(self, *args: str) -> Any:
        return json.loads(self.flowbus(*args, "--json").stdout)


@pytest.fixture
def shell(tmp_path: Path) -> Shell:
    return Shell(tmp_path / "home")
