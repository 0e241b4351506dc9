"""B6 across hosts: completed runs/s with 1, 2 and 4 agent hosts for flows that wait on I/O (a
100 ms sleep), each agent on a host of its own.

Hosts are network namespaces on one bridge (``tests/cluster/netns.py``; needs root): a server
host runs a nats-server and the orchestrator (SQLite store), a client host submits the runs and
waits for them (``b6_agents.load``), and each agent runs on its own host, reaching NATS over the
bridge. The hosts share this machine's cores, as b6_agents.py's processes do; what the host
boundary adds is a network hop on every request.

    sudo python bench/b6_hosts.py [--runs 600] [--concurrency 10] [--agents 1 2 4]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(BENCH), str(REPO)]

from b6_agents import arguments, print_table  # noqa: E402
from scratch import scratch_folder  # noqa: E402

from flowbus.broker.server import find_nats_server  # noqa: E402
from tests.cluster.netns import Host, Network, Process, skip_reason  # noqa: E402


def flowbus(host: Host, name: str, args: list[str], env: dict[str, str], ready: str) -> Process:
    process = host.start(name, [sys.executable, "-m", "flowbus", *args], env)
    process.wait_for(ready, 120)
    return process


def main() -> None:
    args = arguments()
    reason = skip_reason()
    if reason is not None:
        raise SystemExit(f"cannot make hosts here: {reason}")
    root = scratch_folder("flowbus-b6-hosts-")
    with Network(root, subnet=78) as network:
        server = network.add_host("server")
        client = network.add_host("client")
        agent_hosts = [network.add_host(f"agent{n}") for n in range(max(args.agents))]
        url = f"nats://{server.address}:4222"
        env = {**os.environ, "FLOWBUS_HOME": str(root / "home"), "FLOWBUS_NATS_URL": url,
               "FLOWBUS_LOGGING_LEVEL": "WARNING", "PYTHONPATH": f"{BENCH}:{REPO}"}  # fmt: skip
        env.pop("FLOWBUS_STORE_URL", None)
        nats = server.start("nats", [find_nats_server(), "-a", server.address, "-p", "4222",
                                     "-js", "-sd", str(root / "jetstream")], env)  # fmt: skip
        nats.wait_for("Server is ready", 60)
        deploy = [sys.executable, "-m", "flowbus", "deploy", "b4_flows.py:waits_on_io", "-n",
                  "bench"]  # fmt: skip
        server.run(deploy, env, cwd=BENCH)
        flowbus(server, "orchestrator", ["server", "start", "--api-port", "-1"], env,
                "orchestrator is serving")  # fmt: skip
        figures: dict[int, float] = {}
        for count in args.agents:
            agents = []
            for host in agent_hosts[:count]:
                name = f"{host.name}-{count}"
                command = ["agent", "start", "-c", str(args.concurrency), "-n", name]
                agents.append(flowbus(host, "agent", command, env, "is serving"))
            rates = []
            for runs in (args.runs // 10, args.runs):  # a warm-up, then the measure
                load = ("import asyncio, sys, b6_agents; print(asyncio.run(b6_agents.load("
                        f"{url!r}, 'waits-on-io/bench', {runs})))")  # fmt: skip
                rates.append(float(client.run([sys.executable, "-c", load], env, 900).split()[-1]))
            figures[count] = rates[-1]
            print(json.dumps({"agent_hosts": count, "runs_per_second": round(rates[-1], 1)}))
            for agent in agents:
                agent.stop()
    print_table("agent hosts", figures)


if __name__ == "__main__":
    main()
