"""`rlp submit` and `rlp jobs` on a real two-node Ray cluster on 127.0.0.1.

The module starts a head (with the Jobs API on loopback) and a second node with
`ray start`, both in token-auth mode, on ports of their own; submits the quickstart with
three env runners (more CPUs than either node has, so they spread over both), follows it
to success and finds its checkpoint; then submits a job that fails and checks that
`rlp submit --follow` exits non-zero with the job's error. At the end the module stops
its two nodes' processes only (`ray stop` would stop every Ray on the machine, a
developer's own runs included).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from quickstart_runs import QUICKSTART, TINY, sets
from quickstart_runs import rlp as run_rlp

pytestmark = pytest.mark.slow

SMALL = [
    *TINY,
    "resources.num_env_runners=3",  # more CPUs than either node has: they spread
    "resources.num_envs_per_env_runner=1",
    "stop.training_iteration=2",
    "checkpoint.every=1",
]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def ray_cli() -> str:
    return str(Path(sys.executable).parent / "ray")


def node_args(ports: list[int]) -> list[str]:
    """Ports of one node, so two raylets on one machine do not collide."""
    manager, objects, agent, agent_grpc, metrics, runtime_env, low = ports
    return [
        f"--node-manager-port={manager}",
        f"--object-manager-port={objects}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--min-worker-port={low}",
        f"--max-worker-port={low + 40}",
    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run(
        [ray_cli(), "get-auth-token", "--generate"], env=env, check=True, capture_output=True
    )
    gcs, dashboard, client = free_ports(3)
    head_ports = free_ports(6) + [20_000]
    worker_ports = free_ports(6) + [21_000]
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=2", "--disable-usage-stats"]
    head = [
        ray_cli(),
        "start",
        "--head",
        f"--port={gcs}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={client}",
        *common,
        *node_args(head_ports),
    ]
    # A node of its own needs a temp dir of its own: nodes sharing one on a machine share
    # runtime_resources/, and one node's clean-up deletes the job's working dir under the
    # other's driver. A short path: Ray's socket paths must stay under 108 characters.
    head_tmp = tempfile.mkdtemp(prefix="rlph", dir="/tmp")
    worker_tmp = tempfile.mkdtemp(prefix="rlpw", dir="/tmp")
    head.append(f"--temp-dir={head_tmp}")
    worker = [
        ray_cli(),
        "start",
        f"--address=127.0.0.1:{gcs}",
        f"--temp-dir={worker_tmp}",
        *common,
        *node_args(worker_ports),
    ]
    try:
        for command in (head, worker):
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        address = f"http://127.0.0.1:{dashboard}"
        yield {
            "address": address,
            "gcs": f"127.0.0.1:{gcs}",
            "env": env,
            "storage": tmp_path_factory.mktemp("storage"),
        }
    finally:
        stop_nodes([head_tmp, worker_tmp])
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(worker_tmp, ignore_errors=True)


def stop_nodes(temp_dirs: list[str]) -> None:
    """End the processes of the nodes started with these temp dirs, and their children.

    Every node process names its temp dir on its command line (session, log or socket
    paths); workers and agents are their children. Nothing else on the machine is touched.
    """
    import psutil

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


def rlp(cluster, *args, timeout=600):
    return run_rlp(*args, env=cluster["env"], timeout=timeout)


def query(cluster, expression: str):
    """Evaluate a Python expression in a driver connected to the cluster; JSON back."""
    code = (
        "import json, ray\n"
        "from ray.util.state import list_actors\n"
        f"ray.init(address={cluster['gcs']!r}, log_to_driver=False)\n"
        f"print(json.dumps({expression}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=cluster["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def alive_nodes(cluster) -> list[str]:
    return query(cluster, "[n['NodeID'] for n in ray.nodes() if n['Alive']]")


RUNNER_CLASSES = ("MultiAgentEnvRunner", "BatchedEnvRunner")  # the stock and batched runners


def env_runner_nodes(cluster) -> set[str]:
    """Nodes the env runner actors ran on (Ray's state API keeps dead actors too)."""
    return set(
        query(
            cluster,
            f"[a.node_id for a in list_actors(address={cluster['gcs']!r},"  # other Rays run here
            " detail=True, limit=1000, raise_on_missing_output=False)"
            f" if a.class_name in {RUNNER_CLASSES!r}]",
        )
    )


def test_both_nodes_are_alive(cluster):
    assert len(alive_nodes(cluster)) == 2


def test_submit_follow_runs_the_experiment_on_both_nodes(cluster):
    storage = cluster["storage"] / "ok"
    args = sets(SMALL)
    proc = rlp(
        cluster,
        "submit",
        str(QUICKSTART),
        *args,
        "--address",
        cluster["address"],
        "--storage",
        str(storage),
        "--follow",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SUCCEEDED" in proc.stdout
    job_id = proc.stdout.split("submitted ", 1)[1].split()[0]

    (run_dir,) = (storage / "quickstart").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["iterations"] == 2
    checkpoint = Path(summary["best_checkpoint"])
    assert (checkpoint / "policies" / "manifest.json").is_file()

    assert env_runner_nodes(cluster) == set(alive_nodes(cluster)), "runners not on both nodes"

    listed = rlp(cluster, "jobs", "list", "--address", cluster["address"])
    assert listed.returncode == 0 and job_id in listed.stdout and "SUCCEEDED" in listed.stdout
    status = rlp(cluster, "jobs", "status", job_id, "--address", cluster["address"])
    assert status.returncode == 0 and "quickstart" in status.stdout
    logs = rlp(cluster, "jobs", "logs", job_id, "--address", cluster["address"])
    assert logs.returncode == 0 and "best checkpoint" in logs.stdout


def test_a_failing_job_makes_submit_follow_exit_nonzero_with_its_error(cluster, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the storage folder should be")
    args = sets(SMALL)
    proc = rlp(
        cluster,
        "submit",
        str(QUICKSTART),
        *args,
        "--address",
        cluster["address"],
        "--storage",
        str(blocker / "runs"),
        "--follow",
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FAILED" in proc.stderr or "FAILED" in proc.stdout
    assert "Not a directory" in proc.stdout + proc.stderr


def test_unknown_job_ids_and_a_shell_without_ray_auth_mode(cluster):
    proc = rlp(cluster, "jobs", "status", "rlp-no-such-job", "--address", cluster["address"])
    assert proc.returncode == 1 and "no job" in proc.stderr + proc.stdout
    env = {k: v for k, v in cluster["env"].items() if k != "RAY_AUTH_MODE"}
    cmd = [sys.executable, "-m", "rl_platform", "jobs", "list", "--address", cluster["address"]]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_bad_yaml_is_refused_before_reaching_the_cluster(cluster, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nenv: {id: nowhere}\nalgorithm: {id: ppo}\nstorage: /tmp/x\n")
    proc = rlp(cluster, "submit", str(bad), "--address", cluster["address"])
    assert proc.returncode == 2 and "not a registered env" in proc.stderr + proc.stdout
    proc = rlp(cluster, "submit", str(QUICKSTART), "--address", cluster["address"])
    assert proc.returncode == 2 and "storage" in proc.stderr + proc.stdout


def test_an_unreachable_cluster_is_a_clear_error(tmp_path):
    (port,) = free_ports(1)
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    cmd = [
        sys.executable,
        "-m",
        "rl_platform",
        "jobs",
        "list",
        "--address",
        f"http://127.0.0.1:{port}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "cannot reach" in proc.stderr + proc.stdout


def test_jobs_stop_ends_a_running_job(cluster):
    items = [*SMALL, "stop.training_iteration=1000"]
    args = sets(items)
    storage = cluster["storage"] / "stopped"
    proc = rlp(
        cluster,
        "submit",
        str(QUICKSTART),
        *args,
        "--address",
        cluster["address"],
        "--storage",
        str(storage),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    job_id = proc.stdout.split("submitted ", 1)[1].split()[0]
    assert f"rlp jobs logs {job_id} --follow" in proc.stdout
    stopped = rlp(cluster, "jobs", "stop", job_id, "--address", cluster["address"])
    assert stopped.returncode == 0 and "STOPPED" in stopped.stdout, stopped.stdout
    followed = rlp(cluster, "jobs", "logs", job_id, "--follow", "--address", cluster["address"])
    assert followed.returncode == 1 and "STOPPED" in followed.stderr + followed.stdout
