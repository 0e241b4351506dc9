"""prefect.yaml as flowbus deploy reads it (flowbus/cli/deploy_file.py): Prefect's examples
with anchors, the work queue a work pool names, schedules and limits, and errors that name the
key and its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowbus.cli.deploy_file import chosen, notes, parse_deploy_file, working_directory
from flowbus.engine.errors import UsageError

PREFECT_YAML = """\
name: etl
prefect-version: 3.9.1

build: null
push: null
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: flows

definitions:
  work_pools:
    local: &local
      name: local-pool
      work_queue_name: nightly
      job_variables: {}
  schedules:
    daily: &daily
      cron: "0 6 * * *"
      timezone: Europe/Paris

deployments:
  - name: daily
    entrypoint: etl_pipeline.py:etl_flow
    parameters:
      url: https://example.com/data.csv
      limit: 10
    tags: [etl, nightly]
    description: The nightly load
    schedules:
      - *daily
      - interval: 600
        active: false
    work_pool: *local
    concurrency_limit:
      limit: 2
      collision_strategy: CANCEL_NEW
  - name: adhoc
    entrypoint: etl_pipeline.py:etl_flow
    work_pool:
      name: shared
    concurrency_limit: 1
"""


def test_prefects_example_is_read_with_its_anchors() -> None:
    found = parse_deploy_file(PREFECT_YAML, "prefect.yaml")
    daily, adhoc = found.deployments
    assert daily.entrypoint == "etl_pipeline.py:etl_flow" and daily.queue == "nightly"
    assert daily.parameters == {"url": "https://example.com/data.csv", "limit": 10}
    assert daily.tags == ["etl", "nightly"] and daily.description == "The nightly load"
    cron, interval = daily.all_schedules
    assert (cron.cron, cron.timezone, cron.active) == ("0 6 * * *", "Europe/Paris", True)
    assert (interval.interval is not None, interval.active) == (True, False)
    assert daily.limit == (2, "cancel") and adhoc.limit == (1, "enqueue")
    assert adhoc.queue == "shared"
    folder = Path("/srv/project")
    assert working_directory(daily, found, folder) == folder / "flows"
    assert notes(daily, found) == []


def test_names_pick_deployments() -> None:
    found = parse_deploy_file(PREFECT_YAML, "prefect.yaml")
    assert [e.name for e in chosen(found, ["adhoc"], False, "f")] == ["adhoc"]
    assert [e.name for e in chosen(found, ["etl-flow/daily"], False, "f")] == ["daily"]
    assert len(chosen(found, [], True, "f")) == 2
    with pytest.raises(UsageError, match="several deployments"):
        chosen(found, [], False, "f")
    with pytest.raises(UsageError, match="no deployment named nope"):
        chosen(found, ["nope"], False, "f")


def test_an_unknown_key_or_a_wrong_value_names_its_line() -> None:
    bad = PREFECT_YAML.replace("    tags: [etl, nightly]", "    tagz: [etl, nightly]")
    with pytest.raises(UsageError, match=r"prefect\.yaml:27: deployments\.0\.tagz"):
        parse_deploy_file(bad, "prefect.yaml")
    wrong = PREFECT_YAML.replace("concurrency_limit: 1", "concurrency_limit: lots")
    with pytest.raises(UsageError, match=r"prefect\.yaml:41: deployments\.1\.concurrency_limit"):
        parse_deploy_file(wrong, "prefect.yaml")
    with pytest.raises(UsageError, match="not valid YAML"):
        parse_deploy_file("deployments: [", "prefect.yaml")


def test_steps_and_settings_not_used_are_said() -> None:
    text = PREFECT_YAML.replace("build: null", "build:\n  - prefect_docker.build: {}")
    text = text.replace("job_variables: {}", "job_variables: {image: x}")
    found = parse_deploy_file(text, "prefect.yaml")
    said = notes(found.deployments[0], found)
    assert any("build and push" in n for n in said) and any("job_variables" in n for n in said)


def test_git_clone_of_a_local_repository_is_cloned_once_per_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    monkeypatch.setenv("FLOWBUS_HOME", str(tmp_path / "home"))
    repo = tmp_path / "etl-repo"
    (repo / "flows").mkdir(parents=True)
    (repo / "flows" / "etl.py").write_text("VERSION = 1\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], check=True, text=True,
                              capture_output=True,
                              env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                                   "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
                                   "PATH": "/usr/bin:/bin"}).stdout.strip()  # fmt: skip

    subprocess.run(["git", "init", "--quiet", "-b", "main", str(repo)], check=True)
    git("add", ".")
    git("commit", "--quiet", "-m", "one")
    text = f"""
deployments:
  - name: daily
    entrypoint: etl.py:etl
    pull:
      - prefect.deployments.steps.git_clone:
          repository: {repo}
          branch: main
      - prefect.deployments.steps.set_working_directory:
          directory: flows
  - name: remote
    entrypoint: etl.py:etl
    pull:
      - prefect.deployments.steps.git_clone:
          repository: https://github.com/acme/etl.git
"""
    found = parse_deploy_file(text, "prefect.yaml")
    daily, remote = found.deployments
    first = working_directory(daily, found, tmp_path)
    assert first is not None and (first / "etl.py").read_text() == "VERSION = 1\n"
    assert first.parent.parent == tmp_path / "home" / "code" and first.name == "flows"
    assert working_directory(daily, found, tmp_path) == first  # the same commit: reused
    (repo / "flows" / "etl.py").write_text("VERSION = 2\n")
    git("commit", "--quiet", "-am", "two")
    second = working_directory(daily, found, tmp_path)
    assert second is not None and second != first
    assert (second / "etl.py").read_text() == "VERSION = 2\n"
    assert (first / "etl.py").read_text() == "VERSION = 1\n"  # runs in flight keep theirs
    assert notes(daily, found, tmp_path) == []
    assert working_directory(remote, found, tmp_path) is None
    [said] = notes(remote, found, tmp_path)
    assert "git_clone of https://github.com/acme/etl.git skipped" in said
