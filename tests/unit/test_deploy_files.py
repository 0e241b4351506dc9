"""The files in deploy/: parsed, checked against their schemas where a validator exists (the
compose specification, Kubernetes' own schemas), and checked for what flowbus relies on. The
NATS configuration is checked by nats-server itself; the cluster tests run the daemons with the
systemd units' command lines."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowbus.broker import subjects
from flowbus.broker.server import find_nats_server
from tests.cluster.tls import TestCA

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BIN = Path(sys.executable).parent


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / name)
    return parser


def test_the_nats_configuration_is_valid_for_nats_server(tmp_path: Path) -> None:
    env = {**os.environ, **nats_env(tmp_path, 1)}
    conf = str(nats_conf(tmp_path))
    checked = subprocess.run([find_nats_server(), "-c", conf, "-t"], env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def nats_conf(tmp_path: Path) -> Path:
    """deploy/nats/nats-server.conf as an operator installs it: next to the ``auth.conf`` that
    ``flowbus auth init`` made."""
    from flowbus.broker.nats_auth import init

    folder = tmp_path / "etc"
    init(folder)
    shutil.copy(DEPLOY / "nats" / "nats-server.conf", folder / "nats-server.conf")
    return folder / "nats-server.conf"


def nats_env(tmp_path: Path, node: int) -> dict[str, str]:
    """The environment nats-server.conf reads, for node ``node`` on loopback ports."""
    authority = TestCA(tmp_path / "tls")
    cert, key = authority.issue(f"nats-{node}", ["127.0.0.1"])
    return {
        "NATS_NAME": f"nats-{node}",
        "NATS_LISTEN": f"127.0.0.1:{14220 + node}",
        "NATS_CLUSTER_LISTEN": f"127.0.0.1:{16220 + node}",
        "NATS_MONITOR": f"127.0.0.1:{18220 + node}",
        **{f"NATS_ROUTE_{n}": f"nats-route://127.0.0.1:{16220 + n}" for n in (1, 2, 3)},
        "NATS_STORE_DIR": str(tmp_path / f"js-{node}"),
        "NATS_TLS_CERT": str(cert),
        "NATS_TLS_KEY": str(key),
        "NATS_TLS_CA": str(authority.ca),
    }


def test_the_nats_servers_take_flowbus_identities_and_each_role_its_buckets() -> None:
    from flowbus.broker.nats_auth import permissions

    assert "include ./auth.conf" in (DEPLOY / "nats" / "nats-server.conf").read_text()
    values = yaml.safe_load((DEPLOY / "kubernetes" / "nats-values.yaml").read_text())
    assert values["config"]["merge"] == {"$include": "./auth/auth.conf"}
    orchestrator = permissions("orchestrator", "orchestrator")
    assert orchestrator.pub_allow == (">",) and orchestrator.sub_allow == (">",)
    agent = permissions("agent", "a1", ("default",))
    assert any(subjects.QUEUES_BUCKET in subject for subject in agent.pub_allow)


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("flowbus-server.service", ["server", "start"]),
        ("flowbus-agent@.service", ["agent", "start"]),
        ("flowbus-scheduler.service", ["scheduler", "start"]),
    ],
)
def test_the_units_start_flowbus_daemons_that_restart(name: str, command: list[str]) -> None:
    service = unit(name)["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/opt/flowbus/bin/flowbus" and argv[1:3] == command
    assert service["Restart"] == "always"
    files = [line for line in unit_lines(name) if line.startswith("EnvironmentFile=")]
    assert files[0] == "EnvironmentFile=/etc/flowbus/flowbus.env"
    if command[0] == "agent":  # its own credential, and none of the orchestrators' files
        assert files == ["EnvironmentFile=/etc/flowbus/flowbus.env"]
        assert (
            "FLOWBUS_NATS_CREDS=/etc/flowbus/nats-auth/agent-%H-%i.creds" in service["Environment"]
        )
        assert "--name %H-%i" in service["ExecStart"]
    else:
        assert files[1:] == ["EnvironmentFile=/etc/flowbus/orchestrator.env"]
    assert service["NoNewPrivileges"] == "yes"
    # Every option the unit passes is one the command takes.
    shown = subprocess.run([str(BIN / "flowbus"), *command, "--help"], capture_output=True,
                           text=True, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    for option in (a for a in argv[3:] if a.startswith("--")):
        assert option in shown.stdout, (option, shown.stdout)


def unit_lines(name: str) -> list[str]:
    return (DEPLOY / "systemd" / name).read_text().splitlines()


def test_the_env_example_names_only_known_settings() -> None:
    from flowbus.agents.settings import MODELS
    from flowbus.engine.keys import FENCE_KEYS, RESULT_KEYS

    known = {f"FLOWBUS_{n.upper()}" for m in MODELS for n in m.model_fields}
    known |= {"FLOWBUS_API_HOST", "FLOWBUS_API_PORT", "FLOWBUS_AGENT_CONCURRENCY"}  # the units'
    known |= {RESULT_KEYS.variable, FENCE_KEYS.variable}  # keys, read by engine/keys.py
    known.add("FLOWBUS_NATS_CREDS")

    def names(file: str) -> set[str]:
        lines = (DEPLOY / "systemd" / file).read_text().splitlines()
        return {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}

    common, orchestrators = names("flowbus.env.example"), names("orchestrator.env.example")
    assert common | orchestrators <= known, (common | orchestrators) - known
    # What agents' hosts must not hold is the orchestrators' alone.
    only = {
        "FLOWBUS_STORE_URL",
        "FLOWBUS_SECRET_KEY",
        RESULT_KEYS.variable.replace("RESULT", "FENCE"),
    }
    assert only <= orchestrators and not only & common


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    return loaded


def test_compose_matches_the_compose_specification() -> None:
    checker = shutil.which("check-jsonschema", path=str(BIN))
    assert checker is not None, "check-jsonschema is a dev dependency"
    checked = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose/compose.yaml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compose_runs_three_nats_nodes_postgres_two_orchestrators_two_agents() -> None:
    services = compose()["services"]
    nats = [s for s in services if s.startswith("nats-")]
    assert len(nats) == 3
    for name in nats:
        volumes = services[name]["volumes"]
        assert "../nats/nats-server.conf:/etc/nats/nats-server.conf:ro" in volumes
        assert services[name]["environment"]["NATS_NAME"] == name
    assert services["postgres"]["image"].startswith("postgres:")
    commands = [services[s]["command"][1:3] for s in services if "command" in services[s]]
    assert commands.count(["server", "start"]) == 2
    assert commands.count(["agent", "start"]) == 2
    env = services["orchestrator-1"]["environment"]
    assert env["FLOWBUS_STORE_URL"].startswith("postgresql://")
    assert env["FLOWBUS_NATS_URL"].count("tls://") == 3
    for name in ("agent-1", "agent-2"):  # its own credential, no store, no secret key
        agent = services[name]
        assert not {"FLOWBUS_STORE_URL", "FLOWBUS_SECRET_KEY", "FLOWBUS_FENCE_KEYS"} & set(
            agent["environment"]
        )
        assert f"./nats-auth/agent-{name}.creds:/etc/flowbus/nats.creds:ro" in agent["volumes"]


def kubernetes_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        if path.name in ("kustomization.yaml", "nats-values.yaml"):
            continue
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def test_kubernetes_resources_match_kubernetes_schemas() -> None:
    import kubernetes_validate  # type: ignore[import-untyped]

    checked = 0
    for document in kubernetes_documents():
        if document["apiVersion"].startswith("keda.sh/"):
            continue  # a custom resource: checked below for what it relies on
        kubernetes_validate.validate(document, "1.30", strict=True)
        checked += 1
    assert checked >= 7


def test_kubernetes_runs_two_orchestrators_with_probes_and_scales_agents_on_depth() -> None:
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in kubernetes_documents()}
    orchestrator = by_name["Deployment", "flowbus-orchestrator"]
    assert orchestrator["spec"]["replicas"] == 2
    container = orchestrator["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"secretRef": {"name": "flowbus"}} in container["envFrom"]
    scaled = by_name["Deployment", "flowbus-agent-default"]
    pod = scaled["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    secrets |= {e["secretRef"]["name"] for e in pod["containers"][0]["envFrom"] if "secretRef" in e}
    assert secrets == {"nats-ca", "flowbus-agent-default"}  # its own credential, nothing else
    agent_secret = by_name["Secret", "flowbus-agent-default"]["stringData"]
    assert set(agent_secret) == {"FLOWBUS_RESULT_KEYS", "agent.creds"}
    budget = by_name["PodDisruptionBudget", "flowbus-orchestrator"]
    assert budget["spec"]["minAvailable"] == 1
    trigger = next(d for d in kubernetes_documents() if d["kind"] == "ScaledObject")
    assert trigger["spec"]["scaleTargetRef"]["name"] == scaled["metadata"]["name"]
    metadata = trigger["spec"]["triggers"][0]["metadata"]
    assert trigger["spec"]["triggers"][0]["type"] == "nats-jetstream"
    assert metadata["stream"] == subjects.RUNS_STREAM
    assert metadata["consumer"] == subjects.queue_consumer("default")
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    listed = {path for path in kustomization["resources"]}
    on_disk = {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")}
    assert listed == on_disk - {"kustomization.yaml", "nats-values.yaml"}
