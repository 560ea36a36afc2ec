"""A multi-node Ray cluster on this machine: a head and nodes started with ``ray start``.

Shared by tests/integration/test_cluster*.py and bench/scaling.py. Every node runs in
token-auth mode (``RAY_AUTH_MODE=token``), binds 127.0.0.1, and has ports and a temp
dir of its own, so that several raylets on one machine do not collide; each gets a
logical CPU count (``--num-cpus``), while all of them share this machine's cores.
:meth:`LocalCluster.stop` ends only the processes of its own nodes (``ray stop`` would
end every Ray on the machine, a developer's own runs included)::

    cluster = LocalCluster.start(cpus=[1, 1, 1])
    try:
        ...  # rlp submit ... --address cluster.address; ray.init(cluster.gcs)
    finally:
        cluster.stop()
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

WORKER_PORTS = 40  # worker processes a node may start (ports min..min+40)
PORT_BLOCK = 500  # worker-port block per cluster, below Linux's ephemeral range


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports free on 127.0.0.1 now."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def ray_cli() -> str:
    """The ``ray`` command of this Python's environment."""
    return str(Path(sys.executable).parent / "ray")


def node_args(ports: list[int], low_worker_port: int) -> list[str]:
    """Ports of one node (6 of ``ports``), so that raylets on one machine do not collide."""
    manager, objects, agent, agent_grpc, metrics, runtime_env = ports
    return [
        f"--node-manager-port={manager}",
        f"--object-manager-port={objects}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--min-worker-port={low_worker_port}",
        f"--max-worker-port={low_worker_port + WORKER_PORTS}",
    ]


@dataclass
class LocalCluster:
    """A running local cluster: its Jobs API address, GCS address and the shell env."""

    address: str  # http://127.0.0.1:<dashboard>: the Jobs API (rlp submit --address)
    gcs: str  # 127.0.0.1:<port>: ray.init(address=...), rlp evaluate/serve --address
    env: dict[str, str]  # os.environ + RAY_AUTH_MODE=token, this venv on PATH, no RAY_ADDRESS
    temp_dirs: list[str] = field(default_factory=list)  # one per node, head first

    @classmethod
    def start(cls, cpus: list[int], resources: list[dict] | None = None) -> LocalCluster:
        """Start a head with ``cpus[0]`` logical CPUs and one node per further entry.

        ``resources``: custom resources per node (``--resources``), e.g. a learner
        node's ``{"learner_node": 1}``.

        Raises:
            RuntimeError: a node did not start (its ``ray start`` output attached).
        """
        import json

        env = {**os.environ, "RAY_AUTH_MODE": "token"}
        env.pop("RAY_ADDRESS", None)
        # Jobs run `python -m rl_platform`: this environment's python, activated or not.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        subprocess.run(
            [ray_cli(), "get-auth-token", "--generate"], env=env, check=True, capture_output=True
        )
        # All ports at once, so that no two of them (nor two nodes') can be the same.
        gcs, dashboard, client, *ports = free_ports(3 + 6 * len(cpus))
        block = 20_000 + (gcs % 18) * PORT_BLOCK  # clusters started at once: other blocks
        cluster = cls(f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{gcs}", env)
        try:
            for i, count in enumerate(cpus):
                # A node of its own needs a temp dir of its own: nodes sharing one share
                # runtime_resources/, and one node's clean-up deletes a job's working dir
                # under another's driver. Short: socket paths must stay under 108 chars.
                temp = tempfile.mkdtemp(prefix=f"rlp{i}", dir="/tmp")
                cluster.temp_dirs.append(temp)
                command = [
                    ray_cli(),
                    "start",
                    "--node-ip-address=127.0.0.1",
                    f"--num-cpus={count}",
                    "--disable-usage-stats",
                    f"--temp-dir={temp}",
                    *node_args(ports[6 * i : 6 * i + 6], block + i * (WORKER_PORTS + 10)),
                ]
                if resources and resources[i]:
                    command.append(f"--resources={json.dumps(resources[i])}")
                if i == 0:
                    command += [
                        "--head",
                        f"--port={gcs}",
                        "--dashboard-host=127.0.0.1",
                        f"--dashboard-port={dashboard}",
                        f"--ray-client-server-port={client}",
                    ]
                else:
                    command.append(f"--address={cluster.gcs}")
                proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
                if proc.returncode != 0:
                    raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def query(self, expression: str):
        """Evaluate a Python expression in a driver connected to the cluster; JSON back.

        The driver has ``ray`` and ``ray.util.state.list_actors`` imported; give state
        API calls ``address=cluster.gcs`` (other Rays may run on this machine).
        """
        import json

        code = (
            "import json, ray\n"
            "from ray.util.state import list_actors\n"
            f"ray.init(address={self.gcs!r}, log_to_driver=False)\n"
            f"print(json.dumps({expression}))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def alive_nodes(self) -> list[str]:
        """The ids of the cluster's live nodes."""
        return self.query("[n['NodeID'] for n in ray.nodes() if n['Alive']]")

    def stop(self) -> None:
        """End this cluster's node processes (and their children) and remove their dirs."""
        stop_nodes(self.temp_dirs)
        for temp in self.temp_dirs:
            shutil.rmtree(temp, ignore_errors=True)


def stop_nodes(temp_dirs: list[str]) -> None:
    """End the processes of the nodes started with these temp dirs, and their children.

    Every node process names its temp dir on its command line (session, log or socket
    paths); workers and agents are their children. Nothing else on the machine is touched.
    """
    import psutil

    if not temp_dirs:
        return
    roots = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if any(d in line for d in temp_dirs):
            roots.append(proc)
    procs = set(roots)
    for root in roots:
        try:
            procs.update(root.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    procs.discard(psutil.Process())
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
