"""Deployments from the command line and from Python, as a user makes them."""

from __future__ import annotations

from pathlib import Path

from .conftest import Shell


def test_deploy_then_list_and_show(shell: Shell) -> None:
    saved = shell.flowbus_json(
        "deploy",
        "examples/etl_pipeline.py:etl_flow",
        "-n",
        "daily",
        "-q",
        "default",
        "--param",
        "filename=out/daily.csv",
        "--tag",
        "etl",
    )
    assert saved["name"] == "etl-flow/daily"
    assert saved["entrypoint"] == "examples/etl_pipeline.py:etl_flow"
    assert saved["queue"] == "default"
    assert saved["parameters"] == {"filename": "out/daily.csv"}
    assert saved["parameter_schema"]["required"] == ["url", "filename"]
    assert (saved["tags"], saved["version"]) == (["etl"], 1)

    again = shell.flowbus_json(
        "deploy", "examples/etl_pipeline.py:etl_flow", "-n", "daily", "-q", "fast"
    )
    assert (again["version"], again["queue"], again["id"]) == (2, "fast", saved["id"])
    assert again["created"] == saved["created"]

    listed = shell.flowbus_json("deployments", "ls")["deployments"]
    assert [d["name"] for d in listed] == ["etl-flow/daily"]
    shown = shell.flowbus_json("deployments", "show", "etl-flow/daily")
    assert shown == again
    assert "projections match" in shell.flowbus("store", "verify").stdout


def test_bad_deployments_are_clear_errors_and_record_nothing(shell: Shell) -> None:
    cases = [
        (
            ["examples/etl_pipeline.py:etl_flow", "-n", "x", "--param", "nope=1"],
            "nope: not a parameter",
        ),
        (["examples/missing.py:etl_flow", "-n", "x"], "does not exist"),
        (["examples/etl_pipeline.py:etl_flow", "-n", "x", "-q", "no spaces"], "queue name"),
        (["examples/etl_pipeline.py:etl_flow", "-n", "a/b"], "without '/'"),
        (["examples/etl_pipeline.py:etl_flow", "-n", "x", "--param", "novalue"], "name=value"),
    ]
    for args, message in cases:
        done = shell.flowbus("deploy", *args, check=False)
        assert done.returncode == 1, args
        assert message in done.stderr, (args, done.stderr)
    assert shell.flowbus_json("deployments", "ls")["deployments"] == []
    missing = shell.flowbus("deployments", "show", "etl-flow/none", check=False)
    assert missing.returncode == 1 and "no deployment named" in missing.stderr


def test_flow_deploy_from_python(shell: Shell, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "jobs.py").write_text(
        "from flowbus import flow\n"
        "@flow\n"
        "def nightly(limit: int, label: str = 'x') -> int:\n"
        "    return limit\n"
        "if __name__ == '__main__':\n"
        "    saved = nightly.deploy('every-night', queue='batch', parameters={'limit': '7'})\n"
        "    print(saved.entrypoint, saved.queue, saved.parameters['limit'])\n"
    )
    shell.env["PYTHONPATH"] = str(project)
    done = shell.run(str(project / "jobs.py"))
    assert done.stdout.split() == [f"{project / 'jobs.py'}:nightly", "batch", "7"]
    shown = shell.flowbus_json("deployments", "show", "nightly/every-night")
    assert shown["parameters"] == {"limit": 7}  # coerced from the string by the signature
