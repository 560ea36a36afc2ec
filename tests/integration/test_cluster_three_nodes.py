"""A sweep spread over a three-node cluster, and a stored run evaluated and served on it.

The module starts a head and two nodes with `ray start` (bench/local_cluster.py), in
token-auth mode, each with 1 logical CPU; all three share this machine's (2) cores, so
the figures here are about placement, not speed. A sweep whose trials need 3 CPUs (the
trial's own actor and 2 env runners) cannot fit on one node: `rlp submit` runs it, and
Ray's state API shows trial actors on every node. A run trained onto a `file://` storage
URI is then evaluated and served with `--address` by its URI, the policies travelling to
the cluster's workers and Serve replica as data. At the end only this module's nodes are
stopped.
"""

import json
import sys
import urllib.request
from pathlib import Path

import pytest
from quickstart_runs import QUICKSTART, TINY, sets
from quickstart_runs import rlp as run_rlp

sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))
from local_cluster import LocalCluster, free_ports  # noqa: E402 (bench/ on the path first)

pytestmark = pytest.mark.slow

SWEEP = Path(__file__).resolve().parents[2] / "experiments" / "sweeps" / "rendezvous_ppo_sweep.yaml"
TINY_SWEEP = [
    "tune.num_samples=3",
    "tune.max_concurrent_trials=1",
    "tune.scheduler=none",
    "tune.searcher=random",
    "tune.trial_resources.num_env_runners=2",  # 3 CPUs a trial: more than a node has
    "resources.num_envs_per_env_runner=1",
    "algorithm.hyperparams.num_epochs=1",  # the batch stays 500: minibatches go up to it
    "stop.training_iteration=1",
]
RUNNER_CLASSES = ("MultiAgentEnvRunner", "BatchedEnvRunner")  # the stock and batched runners
TRIAL_CLASSES = ("SweepTrial", "ImplicitFunc")  # Tune's trainable actor, by either name


@pytest.fixture(scope="module")
def cluster():
    local = LocalCluster.start(cpus=[1, 1, 1])
    try:
        yield local
    finally:
        local.stop()


def rlp(cluster, *args, timeout=600):
    return run_rlp(*args, env=cluster.env, timeout=timeout)


def actor_nodes(cluster, classes: tuple[str, ...]) -> dict[str, set[str]]:
    """class name -> the nodes its actors ran on (the state API keeps dead actors too)."""
    rows = cluster.query(
        f"[(a.class_name, a.node_id) for a in list_actors(address={cluster.gcs!r},"
        " detail=True, limit=1000, raise_on_missing_output=False)]"
    )
    found: dict[str, set[str]] = {}
    for name, node in rows:
        if any(c in name for c in classes):
            found.setdefault(name, set()).add(node)
    return found


def test_three_nodes_are_alive(cluster):
    assert len(cluster.alive_nodes()) == 3


def test_a_sweep_whose_trials_outgrow_a_node_runs_on_every_node(cluster, tmp_path):
    proc = rlp(
        cluster,
        "submit",
        str(SWEEP),
        *sets(TINY_SWEEP),
        "--address",
        cluster.address,
        "--storage",
        str(tmp_path / "runs"),
        "--follow",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SUCCEEDED" in proc.stdout
    (sweep_dir,) = (tmp_path / "runs" / "rendezvous_ppo_sweep").iterdir()
    assert (sweep_dir / "best.yaml").is_file()

    found = actor_nodes(cluster, RUNNER_CLASSES + TRIAL_CLASSES)
    runners = set().union(*(n for c, n in found.items() if c in RUNNER_CLASSES))
    every = set().union(*found.values())
    assert every == set(cluster.alive_nodes()), f"trial actors not on every node: {found}"
    assert len(runners) >= 2, f"a trial's runners did not spread: {found}"


@pytest.fixture(scope="module")
def stored_run(cluster, tmp_path_factory):
    """A quickstart run trained on the cluster onto a file:// storage URI: (uri, local)."""
    storage = tmp_path_factory.mktemp("bucket")
    items = [*TINY, "resources.num_env_runners=1", "stop.training_iteration=1"]
    items.append("checkpoint.every=1")
    proc = rlp(
        cluster,
        "submit",
        str(QUICKSTART),
        *sets(items),
        "--address",
        cluster.address,
        "--storage",
        storage.as_uri(),
        "--follow",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = (storage / "quickstart").iterdir()
    return run_dir.as_uri(), run_dir


def test_evaluate_a_run_by_its_storage_uri_on_the_cluster(cluster, stored_run, tmp_path):
    uri, run_dir = stored_run
    report = tmp_path / "report"
    proc = rlp(
        cluster,
        "evaluate",
        uri,
        "--address",
        cluster.gcs,
        "--episodes",
        "2",
        "--no-baselines",
        "--report",
        str(report),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((report / "evaluation.json").read_text())
    assert result["env"]["id"] == "trading" and "policy" in result["scores"]
    assert not (run_dir / "evaluation").exists()  # the run under the URI is left as it was


def test_serve_a_run_by_its_storage_uri_on_the_cluster(cluster, stored_run):
    uri, _ = stored_run
    (port,) = free_ports(1)
    proc = rlp(cluster, "serve", uri, "--address", cluster.gcs, "--port", str(port), "--detach")
    try:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/info", timeout=30) as reply:
            info = json.loads(reply.read())
        agent, (size,) = info["agents"][0], info["observation_space"]["shape"]
        body = json.dumps({"observations": {agent: [0.0] * size}}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/act",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert reply.status == 200
            assert agent in json.loads(reply.read())["actions"]
    finally:
        cluster.query("__import__('ray.serve').serve.shutdown()")


def test_a_missing_uri_is_refused_before_reaching_the_cluster(cluster, tmp_path):
    missing = (tmp_path / "no-run").as_uri()
    for command in ("evaluate", "serve"):
        proc = rlp(cluster, command, missing, "--address", cluster.gcs)
        assert proc.returncode == 2 and "no such run directory" in proc.stdout + proc.stderr
