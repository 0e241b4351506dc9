"""Deployments from the command line and from Python, as a user makes them."""

from __future__ import annotations

import json
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


def test_a_redeploy_keeps_the_schedules_it_does_not_replace(shell: Shell) -> None:
    """The README's schedule command, then a concurrency limit added: the schedule stays, and
    the command says so; --clear-schedules and --concurrency-limit 0 remove them."""
    entry = "examples/etl_pipeline.py:etl_flow"
    scheduled = shell.flowbus_json(
        "deploy", entry, "-n", "daily", "-p", "url=https://example.org/iris.csv",
        "-p", "filename=out/daily.csv", "--cron", "0 6 * * *", "--timezone", "Europe/Paris",
        "--catchup", "latest", "--overlap", "skip",
    )  # fmt: skip
    assert len(scheduled["schedules"]) == 1 and scheduled["overlap"] == "skip"
    limited = shell.flowbus(
        "deploy", entry, "-n", "daily", "-p", "url=https://example.org/iris.csv",
        "-p", "filename=out/daily.csv", "--concurrency-limit", "1",
    )  # fmt: skip
    assert "kept from version 1: 1 schedule" in limited.stdout
    shown = shell.flowbus_json("deployments", "show", "etl-flow/daily")
    assert shown["schedules"] == scheduled["schedules"] and shown["concurrency_limit"] == 1
    assert shown["overlap"] == "skip"
    cleared = shell.flowbus_json(
        "deploy", entry, "-n", "daily", "-p", "url=https://example.org/iris.csv",
        "-p", "filename=out/daily.csv", "--clear-schedules", "--concurrency-limit", "0",
    )  # fmt: skip
    assert cleared["schedules"] == [] and cleared["concurrency_limit"] is None


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


def test_flow_deploy_with_prefects_signature_and_from_source(shell: Shell, tmp_path: Path) -> None:
    """`flow.deploy(...)` as Prefect's docs write it, and `flow.from_source(...).deploy(...)`
    for code in another folder."""
    script = tmp_path / "deploy_it.py"
    examples = Path(__file__).resolve().parents[2] / "examples"
    script.write_text(
        "from datetime import timedelta\n"
        "from flowbus import flow\n"
        "etl = flow.from_source(source=" + repr(str(examples)) + ", "
        "entrypoint='etl_pipeline.py:etl_flow')\n"
        "saved = etl.deploy(name='prefect-style', work_pool_name='local-pool',\n"
        "    work_queue_name='nightly', cron='0 6 * * *', interval=timedelta(hours=1),\n"
        "    parameters={'url': 'https://example.com/a.csv', 'filename': 'out/a.csv'},\n"
        "    tags=['etl'], description='from Python', concurrency_limit=2,\n"
        "    job_variables={'env': {'X': '1'}}, image='ignored:latest', build=False,\n"
        "    push=False)\n"
        "print(saved.name, saved.queue, saved.entrypoint, saved.working_dir)\n"
    )
    done = shell.run(str(script))
    assert done.stdout.split() == ["etl-flow/prefect-style", "nightly",
                                   "etl_pipeline.py:etl_flow", str(examples)]  # fmt: skip
    shown = shell.flowbus_json("deployments", "show", "etl-flow/prefect-style")
    assert shown["concurrency_limit"] == 2 and shown["tags"] == ["etl"]
    kinds = [next(iter(k for k in ("cron", "interval") if k in s["schedule"]))
             for s in shown["schedules"]]  # fmt: skip
    assert kinds == ["cron", "interval"]
    remote = shell.run("-c", "from flowbus import flow; flow.from_source("
                       "source='https://github.com/org/repo', entrypoint='f.py:f')",
                       check=False)  # fmt: skip
    assert remote.returncode != 0 and "give a local folder" in remote.stderr


PREFECT_YAML = """\
name: etl
prefect-version: 3.9.1
build:
  - prefect_docker.deployments.steps.build_docker_image:
      image_name: etl
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: {examples}

definitions:
  schedules:
    morning: &morning
      cron: "0 6 * * *"
      timezone: Europe/Paris

deployments:
  - name: nightly
    entrypoint: etl_pipeline.py:etl_flow
    parameters:
      url: https://example.com/data.csv
      filename: out/nightly.csv
    tags: [etl]
    description: The nightly load
    schedules:
      - *morning
      - interval: 3600
        active: false
    work_pool:
      name: local
      work_queue_name: nightly
    concurrency_limit:
      limit: 1
      collision_strategy: CANCEL_NEW
  - name: adhoc
    entrypoint: etl_pipeline.py:etl_flow
    work_pool:
      name: shared
"""


def test_deploy_reads_prefect_yaml(shell: Shell, tmp_path: Path) -> None:
    """`flowbus deploy` with no entrypoint, in a folder with Prefect's prefect.yaml."""
    project = tmp_path / "project"
    project.mkdir()
    examples = Path(__file__).resolve().parents[2] / "examples"
    (project / "prefect.yaml").write_text(PREFECT_YAML.format(examples=examples))

    several = shell.run("-m", "flowbus", "deploy", check=False, cwd=project)
    assert several.returncode == 2 and "--name or --all" in several.stderr
    done = shell.run("-m", "flowbus", "deploy", "--all", "--json", cwd=project)
    assert "build and push steps skipped" in done.stderr
    saved = {d["name"]: d for d in json.loads(done.stdout)["deployments"]}
    nightly = saved["etl-flow/nightly"]
    assert (nightly["queue"], nightly["tags"], nightly["description"]) == (
        "nightly", ["etl"], "The nightly load")  # fmt: skip
    assert nightly["parameters"]["filename"] == "out/nightly.csv"
    assert nightly["concurrency_limit"] == 1 and nightly["collision"] == "cancel"
    assert [s["active"] for s in nightly["schedules"]] == [True, False]
    assert nightly["schedules"][0]["schedule"]["cron"] == "0 6 * * *"
    assert nightly["working_dir"] == str(examples)
    assert saved["etl-flow/adhoc"]["queue"] == "shared"
    # One by name, again: a new version of it alone.
    again = shell.run("-m", "flowbus", "deploy", "--name", "adhoc", "--json", cwd=project)
    [adhoc] = json.loads(again.stdout)["deployments"]
    assert adhoc["version"] == 2

    (project / "prefect.yaml").write_text(PREFECT_YAML.format(examples=examples).replace(
        "    tags: [etl]", "    tagz: [etl]"))  # fmt: skip
    bad = shell.run("-m", "flowbus", "deploy", "--all", check=False, cwd=project)
    assert bad.returncode == 2 and "prefect.yaml:22: deployments.0.tagz" in bad.stderr
