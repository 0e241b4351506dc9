"""The type checker sees across flowbus's packages: ``flowbus.engine``, ``flowbus.broker`` and
``flowbus.agents`` resolve to the top-level folders (through the links in flowbus/), so an
import from another package is its real type, never ``Any``.

A probe module with deliberate cross-package type errors must fail mypy with exactly those
errors; if the links or the mypy settings stopped resolving a package, the probe would pass
(everything ``Any``) and this test would fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
from flowbus.agents.decisions import grant_again
from flowbus.broker.protocol import ClaimGrant
from flowbus.engine.states import StateType

reveal_type(grant_again)
wrong: int = StateType.COMPLETED
grant_again("not an entry", agent=3)
ClaimGrant(run_id=1)
"""


@pytest.mark.timeout(300)
def test_a_cross_package_type_error_fails_the_type_checker(tmp_path: Path) -> None:
    probe = tmp_path / "cross_package_probe.py"
    probe.write_text(PROBE)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", str(probe)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    # mypy may answer from its cache for a probe it checked before, under that one's path.
    said = "\n".join(line for line in out.splitlines() if "cross_package_probe.py:" in line)
    for expected in (
        'Revealed type is "def (entry: flowbus.agents.run_entry.RunEntry, agent: str) -> bool"',
        'Incompatible types in assignment (expression has type "StateType", variable has type',
        'Argument 1 to "grant_again" has incompatible type "str"; expected "RunEntry"',
        'Argument "agent" to "grant_again" has incompatible type "int"; expected "str"',
        'Argument "run_id" to "ClaimGrant" has incompatible type "int"; expected "str"',
    ):
        assert expected in said, out


def test_the_package_links_point_at_the_top_level_folders() -> None:
    for package in ("engine", "broker", "agents"):
        link = ROOT / "flowbus" / package
        assert link.is_symlink(), f"flowbus/{package} must be a link to ../{package}"
        assert link.resolve() == (ROOT / package).resolve()
