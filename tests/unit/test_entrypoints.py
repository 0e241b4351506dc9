"""Loading flows from entrypoints, and every way an entrypoint can be wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flowbus.engine.entrypoints import EntrypointError, load_flow

ROOT = Path(__file__).resolve().parents[2]


def test_a_file_entrypoint_relative_to_the_working_dir() -> None:
    etl = load_flow("examples/etl_pipeline.py:etl_flow", working_dir=ROOT)
    assert etl.name == "etl-flow"
    assert etl.parameters_schema()["required"] == ["url", "filename"]


def test_a_module_entrypoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "jobs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nightly.py").write_text(
        "from flowbus import flow\n@flow\ndef report():\n    return 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_flow("jobs.nightly:report").name == "report"
    sys.modules.pop("jobs.nightly", None)
    sys.modules.pop("jobs", None)


def test_a_file_may_import_its_neighbours(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("ANSWER = 42\n")
    (tmp_path / "job.py").write_text(
        "from flowbus import flow\n"
        "from helpers import ANSWER\n"
        "@flow\n"
        "def job():\n"
        "    return ANSWER\n"
    )
    assert load_flow("job.py:job", working_dir=tmp_path).name == "job"
    assert str(tmp_path) not in sys.path  # the folder is importable only while loading


@pytest.mark.parametrize(
    ("entrypoint", "files", "message"),
    [
        ("no-colon.py", {}, "is not of the form"),
        ("job.py:", {}, "is not of the form"),
        ("missing.py:job", {}, "does not exist"),
        ("broken.py:job", {"broken.py": "def oops(:\n"}, "SyntaxError: invalid syntax"),
        (
            "raises.py:job",
            {"raises.py": "raise RuntimeError('no config')\n"},
            "RuntimeError: no config",
        ),
        ("empty.py:job", {"empty.py": "x = 1\n"}, "has no 'job'"),
        ("plain.py:job", {"plain.py": "def job():\n    pass\n"}, "is a function, not a @flow"),
        ("no_such_module_anywhere:job", {}, "importing module no_such_module_anywhere failed"),
    ],
)
def test_bad_entrypoints_say_what_is_wrong(
    tmp_path: Path, entrypoint: str, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(EntrypointError, match=message):
        load_flow(entrypoint, working_dir=tmp_path)
