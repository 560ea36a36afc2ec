"""Scaling on a local multi-node Ray: env steps/s and time per iteration by env runners,
learners and sampler.

How to run:  python bench/scaling.py [--quick] [--nodes 3] [--cpus-per-node 3]
             [--iterations N] [--out NAME] [--note "what else ran meanwhile"]

Starts a head and nodes with ``ray start`` on this machine (bench/local_cluster.py), in
token-auth mode, each with ``--cpus-per-node`` logical CPUs. All the nodes share this
machine's cores (2 on the development machine): the figures show what spreading the
work costs (actor calls, the object store between nodes, the learners' all-reduce), not
the speed-up that more hardware would bring. For every combination of 1, 2, 4 env
runners, 1, 2 learners (``num_learners``: remote learners, DDP over gloo with 2) and the
stock and batched runners it trains the quickstart (MAPPO on trading, 5 agents) for a
few iterations with ``rlp train --address`` (a driver of its own, on the cluster) at the
same total batch per iteration (split over the learners), and reads the run's
metrics.csv (env steps/s, seconds per iteration) and the trial's result.json (where an
iteration's time goes: sampling, learner update, weight sync, and the rest, the
driver's own cost; RLlib's EMA-smoothed timers turned back into per-iteration values),
all over the iterations after the first (a warm-up). It also records what the plan for
more nodes needs: the bytes of one iteration's sample batch (an env runner built here
samples and its episodes are serialized as Ray would), the learner's trainable
parameters and the DDP all-reduce bytes per update and per iteration. Then the same
small Tune sweep (``rlp tune --address``: 4 trials of 3 CPUs each, all allowed at once)
runs on the nodes and on one node with as many logical CPUs: trials/min and, from Ray's
state API, the nodes each trial and env runner ran on. A combination that fails is
recorded with its error.
Writes bench/results/<out>.json (provenance: commit, Ray, machine, the note on shared
cores) and <out>.png, and prints a table. ``--quick`` (1, 2 runners, the batched
runner, 2 iterations, a small batch, a 2-trial sweep) proves the script works; its
figures, from a machine other helpers share, are not results (``scaling_smoke``).
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
SWEEP = ROOT / "experiments" / "sweeps" / "rendezvous_ppo_sweep.yaml"
# Tune's trainable actor, by any of its names (tune.with_resources: ResourceTrainable)
TRIAL_CLASSES = ("SweepTrial", "ImplicitFunc", "ResourceTrainable")
NOTE = (
    "All nodes run on one machine and share its {cores} cores: figures show the cost of "
    "spreading work over nodes (actor calls, object store, all-reduce), not a speed-up."
)
EMA_COEFF = 0.01  # RLlib's default for timers (MetricsLogger.log_time: reduce="ema")


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


def run_rlp(
    cluster: LocalCluster, verb: str, path: Path, items: list[str], out: str, timeout: int
) -> tuple[subprocess.CompletedProcess, float]:
    """``rlp VERB PATH --set ... --address <cluster> --output OUT``; the process, wall s."""
    command = [sys.executable, "-m", "rl_platform", verb, str(path)]
    command += [arg for item in items for arg in ("--set", item)]
    command += ["--address", cluster.gcs, "--output", out]
    started = time.perf_counter()
    proc = subprocess.run(command, env=cluster.env, capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - started


def measure(cluster: LocalCluster, items: list[str], timeout: int) -> dict:
    """Train once on the cluster; figures from the run's metrics.csv (or the error)."""
    with tempfile.TemporaryDirectory(prefix="rlp-scaling-") as out:
        proc, wall = run_rlp(cluster, "train", QUICKSTART, items, out, timeout)
        metrics = list(Path(out).glob("*/*/metrics.csv"))
        if proc.returncode != 0 or not metrics:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"error": scrub(" | ".join(tail))[-500:], "wall_s": round(wall, 1)}
        with metrics[0].open(newline="") as f:
            rows = list(csv.DictReader(f))
        results = metrics[0].parent / "trial" / "result.json"
        lines = results.read_text().splitlines() if results.is_file() else []
        try:
            parts = split_iteration([json.loads(line) for line in lines if line.strip()])
        except (KeyError, TypeError, ValueError) as error:  # keep the run's figures
            parts = {"parts_error": repr(error)}
    first, last = rows[0], rows[-1]
    steps = float(last["env_steps"]) - float(first["env_steps"])
    seconds = float(last["time_total_s"]) - float(first["time_total_s"])
    timed = len(rows) - 1
    return {
        "iterations": len(rows),
        "env_steps_per_s": round(steps / seconds, 1) if seconds > 0 else None,
        "s_per_iteration": round(seconds / timed, 3) if timed else None,
        "first_iteration_s": round(float(first["time_total_s"]), 2),
        **parts,
        "wall_s": round(wall, 1),
    }


def un_ema(values: list[float], coeff: float = EMA_COEFF) -> list[float]:
    """Per-iteration values back from RLlib's EMA-smoothed timers (``timers/...``).

    RLlib reports ``e_t = (1 - c) e_(t-1) + c x_t`` with ``e_1 = x_1`` (c = 0.01), so
    its timers after a few iterations still mostly show the first (warm-up) one.
    """
    out = values[:1]
    for before, now in zip(values, values[1:], strict=False):
        out.append((now - (1 - coeff) * before) / coeff)
    return out


def trainable_parameters(results: list[dict]) -> int:
    """The modules' trainable parameters, summed (RLlib reports them on the first
    iteration only: NaN after it)."""
    best = 0.0
    for result in results:
        counts = [
            float(stats.get("num_trainable_parameters", "nan"))
            for module, stats in result.get("learners", {}).items()
            if module != "__all_modules__" and isinstance(stats, dict)
        ]
        best = max([best, sum(c for c in counts if c == c)])  # c == c: not NaN
    return int(best)


def split_iteration(results: list[dict]) -> dict:
    """Where an iteration's time goes, averaged over the iterations after the first.

    ``sample_s``: the driver waiting for the env runners' batches (``timers/
    env_runner_sampling_timer``); ``learn_s``: the learner update, all-reduce included
    (``timers/learner_update_timer``); ``sync_weights_s``: the new weights to the runners
    (``timers/synch_weights``); ``driver_s``: the rest of ``time_this_iter_s`` (metrics
    reduction, callbacks, Tune's result handling: the driver's own per-iteration cost).
    Also the learner's trainable parameters and the DDP all-reduce payload per update
    and per iteration (params x 4 bytes; one all-reduce per minibatch step).
    """
    if len(results) < 2:
        return {}
    timers = {
        "sample_s": "env_runner_sampling_timer",
        "learn_s": "learner_update_timer",
        "sync_weights_s": "synch_weights",
    }
    out: dict = {}
    for name, key in timers.items():
        series = [float(r.get("timers", {}).get(key, 0.0)) for r in results]
        out[name] = sum(un_ema(series)[1:]) / (len(results) - 1)
    total = sum(float(r["time_this_iter_s"]) for r in results[1:]) / (len(results) - 1)
    out["driver_s"] = total - sum(out.values())
    out = {k: round(v, 4) for k, v in out.items()}
    params = trainable_parameters(results)
    config = results[-1].get("config", {})
    per_learner = int(config.get("_train_batch_size_per_learner") or 0)
    minibatch = int(config.get("minibatch_size") or per_learner or 1)
    epochs = int(config.get("num_epochs") or 1)
    updates = max(per_learner // minibatch, 1) * epochs
    ddp = int(config.get("num_learners") or 0) >= 2  # one learner: no all-reduce at all
    out.update(
        trainable_parameters=params,
        updates_per_iteration=updates,
        allreduce_bytes_per_update=params * 4 if ddp else 0,
        allreduce_bytes_per_iteration=params * 4 * updates if ddp else 0,
    )
    return out


def batch_bytes(sampler: str, steps: int = 400) -> dict:
    """Bytes an env runner sends the driver per env step: one runner built here, no Ray.

    The runner samples ``steps`` env steps and the episodes it returns are serialized as
    Ray would put them in the object store (pickle protocol 5 of our own fresh objects,
    timed both ways: what a driver spends per MB). Also the arrays' own bytes per agent
    step, from the first step.
    """
    import pickle

    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

    from rl_platform.builder import build_algorithm_config
    from rl_platform.config import load_experiment

    items = [f"resources.sampler={sampler}", "resources.num_envs_per_env_runner=4"]
    config = build_algorithm_config(load_experiment(QUICKSTART, items))
    runner = (config.env_runner_cls or MultiAgentEnvRunner)(config=config)
    try:
        episodes = runner.sample(num_timesteps=steps)
    finally:
        runner.stop()
    sampled = sum(len(e) for e in episodes)
    started = time.perf_counter()
    blob = pickle.dumps(episodes, protocol=5)
    dumped = time.perf_counter() - started
    started = time.perf_counter()
    pickle.loads(blob)  # bytes this function just made from its own episodes
    loaded = time.perf_counter() - started
    size = len(blob)
    agent = next(iter(episodes[0].agent_episodes.values()))
    arrays = [agent.get_observations(0), agent.get_actions(0)]
    arrays += [agent.get_extra_model_outputs(k, 0) for k in agent.extra_model_outputs]
    leaves = [leaf for a in arrays for leaf in (a.values() if isinstance(a, dict) else [a])]
    per_agent_step = sum(getattr(leaf, "nbytes", 8) for leaf in leaves) + 8  # + reward
    return {
        "sampler": sampler,
        "env_steps": sampled,
        "agents": len(episodes[0].agent_episodes),
        "serialized_bytes_per_env_step": round(size / sampled, 1),
        "array_bytes_per_agent_step": per_agent_step,
        # What the driver spends per MB of batch: deserializing the runners' episodes,
        # serializing the learners' shards (one process, this machine's core).
        "serialize_s_per_mb": round(dumped / size * 1e6, 4),
        "deserialize_s_per_mb": round(loaded / size * 1e6, 4),
        "arrays": {
            "observation": {k: list(v.shape) for k, v in agent.get_observations(0).items()}
            if isinstance(agent.get_observations(0), dict)
            else list(agent.get_observations(0).shape),
            "action": list(agent.get_actions(0).shape),
            "extra_model_outputs": sorted(agent.extra_model_outputs),
        },
    }


def actors(cluster: LocalCluster) -> list[tuple[str, str, str]]:
    """(actor id, class name, node id) of every actor the cluster has had."""
    return [
        tuple(row)
        for row in cluster.query(
            f"[(a.actor_id, a.class_name, a.node_id) for a in list_actors(address={cluster.gcs!r},"
            " detail=True, limit=10000, raise_on_missing_output=False)]"
        )
    ]


def sweep(cluster: LocalCluster, trials: int, iterations: int, timeout: int) -> dict:
    """:func:`run_sweep`, or its error: the training figures are kept either way."""
    try:
        return run_sweep(cluster, trials, iterations, timeout)
    except (RuntimeError, ValueError, KeyError, subprocess.TimeoutExpired) as error:
        return {"error": scrub(repr(error))[-500:]}


def run_sweep(cluster: LocalCluster, trials: int, iterations: int, timeout: int) -> dict:
    """A small Tune sweep (``rlp tune --address``) on the cluster: trials/min, placement.

    Every trial needs 3 CPUs (its trainable actor and 2 env runners), all trials may run
    at once; the actors the sweep started (state API, new since before it) say where
    the trials and their runners ran.
    """
    before = {a[0] for a in actors(cluster)}
    items = [
        f"tune.num_samples={trials}",
        f"tune.max_concurrent_trials={trials}",
        "tune.scheduler=none",
        "tune.searcher=random",
        "tune.trial_resources.num_env_runners=2",
        "resources.num_envs_per_env_runner=1",
        f"stop.training_iteration={iterations}",
    ]
    with tempfile.TemporaryDirectory(prefix="rlp-scaling-") as out:
        proc, wall = run_rlp(cluster, "tune", SWEEP, items, out, timeout)
        tables = list(Path(out).glob("*/*/trials.csv"))
        done = 0
        if tables:
            with tables[0].open(newline="") as f:
                done = sum(1 for _ in csv.DictReader(f))
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": scrub(" | ".join(tail))[-500:], "wall_s": round(wall, 1)}
    new = [a for a in actors(cluster) if a[0] not in before]
    # Nodes named head, node1, node2... (the order Ray lists them, head first).
    try:
        listed = cluster.query(
            "[(n['NodeID'], 'node:__internal_head__' in n['Resources']) for n in ray.nodes()]"
        )
    except RuntimeError:  # then node ids instead of names
        listed = []
    order = [n for n, head in listed if head] + [n for n, head in listed if not head]
    label = {n: ("head" if i == 0 else f"node{i}") for i, n in enumerate(order)}
    nodes = sorted({a[2] for a in new})
    where: dict[str, dict[str, int]] = {}
    for _, name, node in new:
        short = "trial" if any(c in name for c in TRIAL_CLASSES) else name
        counts = where.setdefault(short, {})
        counts[label.get(node, node)] = counts.get(label.get(node, node), 0) + 1
    return {
        "trials": trials,
        "trials_finished": done,
        "iterations_per_trial": iterations,
        "wall_s": round(wall, 1),
        "trials_per_min": round(done / wall * 60, 2) if wall > 0 else None,
        "nodes": len(order),
        "nodes_used": len(nodes),
        "actors_by_node": where,
    }


def plot(results: list[dict], path: Path) -> None:
    """Env steps/s and s per iteration against env runners, a line per learners x sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
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
    for ax, title in zip(axes[:2], ("env steps / s", "seconds / iteration"), strict=True):
        ax.set_xlabel("env runners")
        ax.set_title(title)
        ax.set_xticks(sorted({r["env_runners"] for r in results}))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    # Where an iteration's time goes, per combination (iterations after the first).
    done = [r for r in results if "driver_s" in r]
    bottom = [0.0] * len(done)
    for part in ("sample_s", "learn_s", "sync_weights_s", "driver_s"):
        heights = [max(r[part], 0.0) for r in done]
        axes[2].bar(range(len(done)), heights, bottom=bottom, label=part.removesuffix("_s"))
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    labels = [f"{r['env_runners']}r{r['learners']}l\n{r['sampler'][:5]}" for r in done]
    axes[2].set_xticks(range(len(done)), labels, fontsize=7)
    axes[2].set_title("seconds / iteration by part (r: runners, l: learners)")
    axes[2].legend(fontsize=8)
    axes[2].grid(alpha=0.3, axis="y")
    fig.suptitle(f"quickstart (MAPPO, trading) on local Ray nodes sharing {os.cpu_count()} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run: proves it works")
    parser.add_argument("--nodes", type=int, default=3, help="head + nodes")
    parser.add_argument("--cpus-per-node", type=int, default=3, help="logical CPUs of each")
    parser.add_argument("--iterations", type=int, default=None, help="per training run")
    parser.add_argument("--out", default=None, help="result name (default scaling[_smoke])")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per training run")
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    args = parser.parse_args()
    quick = args.quick
    runners = [1, 2] if quick else [1, 2, 4]
    learners = [1, 2]
    samplers = ["batched"] if quick else ["stock", "batched"]
    iterations, batch = (2, 400) if quick else (5, 2000)
    iterations = args.iterations or iterations
    trials, trial_iterations = (2, 1) if quick else (4, 3)
    name = args.out or ("scaling_smoke" if quick else "scaling")

    sizes = {sampler: batch_bytes(sampler, batch) for sampler in samplers}
    print(json.dumps(sizes), flush=True)
    cluster = LocalCluster.start(cpus=[args.cpus_per_node] * args.nodes)
    results = []
    sweeps = {}
    try:
        for sampler in samplers:
            for n_learners in learners:
                for n_runners in runners:
                    items = overrides(n_runners, n_learners, sampler, batch, iterations)
                    row = {"env_runners": n_runners, "learners": n_learners, "sampler": sampler}
                    row.update(measure(cluster, items, args.timeout))
                    per_step = sizes[sampler]["serialized_bytes_per_env_step"]
                    row["sample_bytes_per_iteration"] = round(per_step * batch)
                    results.append(row)
                    print(json.dumps(row), flush=True)
        sweeps[f"{args.nodes}_nodes"] = sweep(cluster, trials, trial_iterations, args.timeout)
        print(json.dumps(sweeps), flush=True)
    finally:
        cluster.stop()
    # The same sweep on one node with the same logical CPUs in all.
    single = LocalCluster.start(cpus=[args.cpus_per_node * args.nodes])
    try:
        sweeps["1_node"] = sweep(single, trials, trial_iterations, args.timeout)
        print(json.dumps(sweeps), flush=True)
    finally:
        single.stop()

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
            "meanwhile": args.note or "not recorded",
        },
        "cluster": {"nodes": args.nodes, "logical_cpus_per_node": args.cpus_per_node},
        "note": NOTE.format(cores=os.cpu_count()),
        "experiment": {"file": "experiments/quickstart.yaml", "iterations": iterations},
        "total_batch_per_iteration": batch,
        "sample_batch": sizes,
        "results": results,
        "sweep": {
            "file": "experiments/sweeps/rendezvous_ppo_sweep.yaml",
            "what": "the same sweep on the nodes, then on 1 node with their logical CPUs",
            "cpus_per_trial": 3,
            **sweeps,
        },
    }
    (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    plot(results, out / f"{name}.png")
    head = "runners learners  sampler   steps/s  s/iter  sample   learn  driver  allreduce/it"
    print(head)
    for r in results:
        key = f"{r['env_runners']:>7} {r['learners']:>8} {r['sampler']:>8}"
        if "error" in r:
            print(f"{key} error: {r['error']}")
            continue
        print(
            f"{key} {r['env_steps_per_s']:>9} {r['s_per_iteration']:>7} "
            f"{r.get('sample_s', '-'):>7} {r.get('learn_s', '-'):>7} "
            f"{r.get('driver_s', '-'):>7} {r.get('allreduce_bytes_per_iteration', '-'):>13}"
        )
    for where, row in sweeps.items():
        print(where, json.dumps(row))
    print(f"wrote {out / name}.json and .png")


if __name__ == "__main__":
    main()
