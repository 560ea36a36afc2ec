"""`rlp submit` and `rlp jobs` on a real two-node Ray cluster on 127.0.0.1.

The module starts a head (with the Jobs API on loopback) and a second node with
`ray start` (bench/local_cluster.py), both in token-auth mode, on ports of their own;
submits the quickstart with three env runners (more CPUs than either node has, so they
spread over both), follows it to success and finds its checkpoint; then submits a job
that fails and checks that `rlp submit --follow` exits non-zero with the job's error. At
the end the module stops its two nodes' processes only (`ray stop` would stop every Ray
on the machine, a developer's own runs included).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from quickstart_runs import QUICKSTART, TINY, sets
from quickstart_runs import rlp as run_rlp

sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))
from local_cluster import LocalCluster, free_ports  # noqa: E402 (bench/ on the path first)

pytestmark = pytest.mark.slow

SMALL = [
    *TINY,
    "resources.num_env_runners=3",  # more CPUs than either node has: they spread
    "resources.num_envs_per_env_runner=1",
    "stop.training_iteration=2",
    "checkpoint.every=1",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    local = LocalCluster.start(cpus=[2, 2])
    try:
        yield {
            "address": local.address,
            "gcs": local.gcs,
            "env": local.env,
            "storage": tmp_path_factory.mktemp("storage"),
        }
    finally:
        local.stop()


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
