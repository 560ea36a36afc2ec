"""Scaling on a local multi-node Ray: env steps/s and time per iteration by env runners,
learners and sampler.

How to run:  python bench/scaling.py [--quick] [--nodes 3] [--cpus-per-node 3] [--out NAME]

Starts a head and nodes with ``ray start`` on this machine (bench/local_cluster.py), in
token-auth mode, each with ``--cpus-per-node`` logical CPUs. All the nodes share this
machine's cores (2 on the development machine): the figures show what spreading the
work costs (actor calls, the object store between nodes, the learners' all-reduce), not
the speed-up that more hardware would bring. For every combination of 1, 2, 4 env
runners, 1, 2 learners (``num_learners``: remote learners, DDP over gloo with 2) and the
stock and batched runners it trains the quickstart (MAPPO on trading, 5 agents) for a
few iterations with ``rlp train --address`` (a driver of its own, on the cluster) at the
same total batch per iteration (split over the learners), and reads the run's
metrics.csv: env steps/s and seconds per iteration, both over the iterations after the
first (a warm-up). A combination that fails is recorded with its error.
Writes bench/results/<out>.json (provenance: commit, Ray, machine, the note on shared
cores) and <out>.png, and prints a table. ``--quick`` (1, 2 runners, the batched
runner, 2 iterations, a small batch) proves the script works; its figures, from a
machine other helpers share, are not results: keep its output as scaling_smoke.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from local_cluster import LocalCluster
from provenance import commit

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "experiments" / "quickstart.yaml"
NOTE = (
    "All nodes run on one machine and share its {cores} cores: figures show the cost of "
    "spreading work over nodes (actor calls, object store, all-reduce), not a speed-up."
)


def overrides(runners: int, learners: int, sampler: str, batch: int, iterations: int) -> list:
    """``--set`` items: the quickstart at one combination, same total batch per iteration."""
    per_learner = batch // learners
    return [
        f"resources.num_env_runners={runners}",
        f"resources.num_learners={learners}",
        f"resources.sampler={sampler}",
        "resources.num_envs_per_env_runner=4",
        f"algorithm.hyperparams.train_batch_size_per_learner={per_learner}",
        f"algorithm.hyperparams.minibatch_size={min(per_learner, 500)}",
        "algorithm.hyperparams.num_epochs=2",
        f"stop.training_iteration={iterations}",
        "checkpoint.every=0",
        "evaluation.every=0",
    ]


def scrub(text: str) -> str:
    """An error line without this machine's paths (the run's temp dir is gone anyway)."""
    return re.sub(r"\S*(/tmp|/home|/work)/\S*", "<path>", " ".join(text.split()))


def measure(cluster: LocalCluster, items: list[str], timeout: int) -> dict:
    """Train once on the cluster; figures from the run's metrics.csv (or the error)."""
    with tempfile.TemporaryDirectory(prefix="rlp-scaling-") as out:
        command = [sys.executable, "-m", "rl_platform", "train", str(QUICKSTART)]
        command += [arg for item in items for arg in ("--set", item)]
        command += ["--address", cluster.gcs, "--output", out]
        started = time.perf_counter()
        proc = subprocess.run(
            command, env=cluster.env, capture_output=True, text=True, timeout=timeout
        )
        wall = time.perf_counter() - started
        metrics = list(Path(out).glob("*/*/metrics.csv"))
        if proc.returncode != 0 or not metrics:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"error": scrub(" | ".join(tail))[-500:], "wall_s": round(wall, 1)}
        with metrics[0].open(newline="") as f:
            rows = list(csv.DictReader(f))
    first, last = rows[0], rows[-1]
    steps = float(last["env_steps"]) - float(first["env_steps"])
    seconds = float(last["time_total_s"]) - float(first["time_total_s"])
    timed = len(rows) - 1
    return {
        "iterations": len(rows),
        "env_steps_per_s": round(steps / seconds, 1) if seconds > 0 else None,
        "s_per_iteration": round(seconds / timed, 3) if timed else None,
        "first_iteration_s": round(float(first["time_total_s"]), 2),
        "wall_s": round(wall, 1),
    }


def plot(results: list[dict], path: Path) -> None:
    """Env steps/s and s per iteration against env runners, a line per learners x sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    lines = sorted({(r["learners"], r["sampler"]) for r in results})
    for learners, sampler in lines:
        rows = [
            r
            for r in results
            if (r["learners"], r["sampler"]) == (learners, sampler) and "error" not in r
        ]
        if not rows:
            continue
        x = [r["env_runners"] for r in rows]
        label = f"{learners} learner{'s' if learners > 1 else ''}, {sampler}"
        axes[0].plot(x, [r["env_steps_per_s"] for r in rows], marker="o", label=label)
        axes[1].plot(x, [r["s_per_iteration"] for r in rows], marker="o", label=label)
    for ax, title in zip(axes, ("env steps / s", "seconds / iteration"), strict=True):
        ax.set_xlabel("env runners")
        ax.set_title(title)
        ax.set_xticks(sorted({r["env_runners"] for r in results}))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"quickstart (MAPPO, trading) on local Ray nodes sharing {os.cpu_count()} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run: proves it works")
    parser.add_argument("--nodes", type=int, default=3, help="head + nodes")
    parser.add_argument("--cpus-per-node", type=int, default=3, help="logical CPUs of each")
    parser.add_argument("--out", default=None, help="result name (default scaling[_smoke])")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per training run")
    args = parser.parse_args()
    quick = args.quick
    runners = [1, 2] if quick else [1, 2, 4]
    learners = [1, 2]
    samplers = ["batched"] if quick else ["stock", "batched"]
    iterations, batch = (2, 400) if quick else (5, 2000)
    name = args.out or ("scaling_smoke" if quick else "scaling")

    cluster = LocalCluster.start(cpus=[args.cpus_per_node] * args.nodes)
    results = []
    try:
        for sampler in samplers:
            for n_learners in learners:
                for n_runners in runners:
                    items = overrides(n_runners, n_learners, sampler, batch, iterations)
                    row = {"env_runners": n_runners, "learners": n_learners, "sampler": sampler}
                    row.update(measure(cluster, items, args.timeout))
                    results.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        cluster.stop()

    import ray

    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "bench": "scaling",
        "command": "python bench/scaling.py" + (" --quick" if quick else ""),
        "commit": commit(),
        "ray": ray.__version__,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "cluster": {"nodes": args.nodes, "logical_cpus_per_node": args.cpus_per_node},
        "note": NOTE.format(cores=os.cpu_count()),
        "experiment": {"file": "experiments/quickstart.yaml", "iterations": iterations},
        "total_batch_per_iteration": batch,
        "results": results,
    }
    (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    plot(results, out / f"{name}.png")
    print(f"{'runners':>7} {'learners':>8} {'sampler':>8} {'steps/s':>9} {'s/iter':>7}")
    for r in results:
        if "error" in r:
            print(f"{r['env_runners']:>7} {r['learners']:>8} {r['sampler']:>8} error: {r['error']}")
            continue
        print(
            f"{r['env_runners']:>7} {r['learners']:>8} {r['sampler']:>8} "
            f"{r['env_steps_per_s']:>9} {r['s_per_iteration']:>7}"
        )
    print(f"wrote {out / name}.json and .png")


if __name__ == "__main__":
    main()
