"""flowbus across five hosts (network namespaces), started from deploy/'s files, while hosts
fail: every process of the host leading the events stream killed -9, one host's link down for
15 s, an orchestrator killed -9. Every acknowledged run completes exactly once, no flow body
runs again once its completion is recorded, and the store verifies. The longest gaps in
accepted submissions and in completions seen by a subscriber are measured and printed."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .cluster import NODES, Cluster

RUNS = 300
RATE = 8.0  # submissions per second, for about 37 s: the faults fall among them


def faults(cluster: Cluster, log: list[str], errors: list[BaseException]) -> None:
    """The faults, in order, a few seconds apart; each failed host comes back as its units
    would restart it."""
    try:
        time.sleep(5)
        leader = cluster.script("leader.py", "FLOWBUS_EVENTS")["leader"]
        host = leader.removeprefix("nats-")
        log.append(f"killed every process of {host} (leader of FLOWBUS_EVENTS)")
        cluster.hosts[host].kill_all()
        time.sleep(3)
        cluster.start_host(host)
        time.sleep(4)
        cut = next(n for n in NODES if n != host)
        log.append(f"link of {cut} down for 15 s")
        cluster.hosts[cut].link(up=False)
        time.sleep(15)
        cluster.hosts[cut].link(up=True)
        time.sleep(3)
        victim = next(n for n in NODES if n not in (host, cut))
        log.append(f"orchestrator of {victim} killed -9")
        cluster.orchestrators[victim].kill()
        time.sleep(2)
        cluster.start_orchestrator(victim)
    except BaseException as exc:  # the test reports it
        errors.append(exc)


def stuck_report(cluster: Cluster, stuck: dict[str, str], log: list[str]) -> str:
    """Why runs did not end, the most telling last (a CI log may show only its end)."""
    try:
        recording = json.dumps(cluster.script("recording.py", timeout=60))
    except Exception as exc:  # the report says so
        recording = f"unreadable: {exc!r}"
    firsts = "\n".join(f"  {run}: {seen}" for run, seen in list(stuck.items())[:8])
    excerpts = "\n".join(f"  {line}" for line in cluster.orchestrator_excerpts())
    return (
        f"{len(stuck)} of {RUNS} runs did not end; faults: {log}\n{firsts}\n"
        f"orchestrators' last warnings:\n{excerpts}\nrecording: {recording}"
    )


@pytest.mark.timeout(900)
def test_every_run_completes_once_while_hosts_fail(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    cluster.client("deploy", "flows.py:chaos_steps", "-n", "cluster")
    replicas = cluster.script("leader.py", "FLOWBUS_RUNS")["replicas"]
    assert replicas == 3  # three JetStream servers: three replicas, by default
    ledger = tmp_path / "ledger.txt"
    log: list[str] = []
    errors: list[BaseException] = []
    injector = threading.Thread(target=faults, args=(cluster, log, errors), daemon=True)
    injector.start()
    report: dict[str, Any] = cluster.script(
        "submitter.py",
        "chaos-steps/cluster",
        str(RUNS),
        str(RATE),
        str(ledger),
        timeout=700,
        creds="service.creds",
    )
    injector.join(120)
    assert not errors, errors
    accepted = report["accepted"]
    assert report["refused"] == {}, f"submissions never accepted: {report['refused']}; {log}"
    if report["stuck"]:
        pytest.fail(stuck_report(cluster, report["stuck"], log), pytrace=False)
    assert len(accepted) == RUNS
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps(list(accepted)))
    verified = cluster.script("verify.py", str(ids))
    ended_otherwise = {run: verified["runs"][run]["history"]
                       for run, end in report["states"].items() if end != "Completed"}  # fmt: skip
    if ended_otherwise:  # each such run's whole history, untruncated
        histories = json.dumps(ended_otherwise, indent=1)
        pytest.fail(f"{Counter(report['states'].values())}; faults {log}; runs that did not "
                    f"complete: {histories}", pytrace=False)  # fmt: skip
    assert verified["problems"] == []
    executions: dict[str, Counter[str]] = {run: Counter() for run in accepted}
    for line in ledger.read_text().splitlines():
        run, what = line.split()
        executions[run][what] += 1
    for run, seen in verified["runs"].items():
        states = seen["states"]
        assert states.count("Completed") == 1 and states[-1] == "Completed", (run, states)
        # A body's end runs at most once per attempt: none after the completion was recorded.
        assert 1 <= executions[run]["end"] <= seen["attempts"], (run, executions[run], states)
    cluster.client("store", "verify")
    print(
        f"\nfaults: {log}\nlongest gap in accepted submissions: "
        f"{report['longest_gap_accepted']:.2f} s; in completions seen: "
        f"{report['longest_gap_ended']:.2f} s"
    )
