"""MAPPO side by side with BenchMARL 1.5 on its own VMAS tasks, from one invocation.

BenchMARL runs in its own virtualenv, not a dependency of this project (torch in the same
pip command, or torchvision pulls a newer torch; this resolves torchrl 0.11.1,
tensordict 0.11.0, torchvision 0.28.0, which the bench does not use):

    python3 -m venv ~/benchmarl-venv
    ~/benchmarl-venv/bin/pip install torch==2.13.0 benchmarl==1.5.2 vmas==1.5.2

How to run:
    python bench/standard.py --benchmarl-python ~/benchmarl-venv/bin/python
    python bench/standard.py --benchmarl-python ... --full      # + IPPO, + balance
    python bench/standard.py --benchmarl-python ... --quick     # tiny budgets: a smoke run
    python bench/standard.py --benchmarl-python ... --only throughput

* ``learning``: for each seed, BenchMARL's MAPPO with its VMAS defaults (a driver run by
  the other Python) and ours from experiments/vmas_navigation_mappo.yaml (the same
  settings mirrored), ``--frames`` each; wall time, frames/s, the greedy return of the
  final policy over 10 episodes (mean over seeds, 95% bootstrap CI), both training curves;
* ``throughput``: MAPPO on VMAS simple_spread, 600 envs, 60,000 frames a batch, one pass
  (one epoch, one minibatch), frames/s end to end, the first iteration left out.

Without ``--benchmarl-python`` only our side runs. Writes bench/results/standard.json and
standard_learning.png (``--quick``: standard_quick.*). What is mirrored and what cannot
be, setting by setting: ``MIRRORING`` below (also in the JSON) and docs/benchmarks.md.
Results to expect: see the JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
EVAL_SEED = 1000

# BenchMARL task -> our mirrored experiment (IPPO: the same file with algorithm.id ippo).
TASKS = {
    "navigation": EXPERIMENTS / "vmas_navigation_mappo.yaml",
    "balance": EXPERIMENTS / "vmas_balance_mappo_benchmarl.yaml",
}
THROUGHPUT = {"task": "simple_spread", "envs": 600, "batch": 60_000, "iterations": 4}
# --quick: BenchMARL-side sizes (ours mirrored from them) small enough to test the script.
QUICK_SETUP = {
    "on_policy_collected_frames_per_batch": 600,
    "on_policy_n_envs_per_worker": 6,  # 100 steps each: every batch ends episodes
    "on_policy_n_minibatch_iters": 6,
    "on_policy_minibatch_size": 100,  # RLlib wants minibatch rows (x agents) <= the batch
}
QUICK_THROUGHPUT = {"task": "simple_spread", "envs": 60, "batch": 6_000, "iterations": 3}

# BenchMARL 1.5.2's defaults for MAPPO on VMAS, as its conf/ YAMLs set them; the driver
# reads them again at run time and the bench warns where they differ.
BENCHMARL_DEFAULTS = {
    "on_policy_collected_frames_per_batch": 6000,
    "on_policy_n_envs_per_worker": 10,
    "on_policy_n_minibatch_iters": 45,
    "on_policy_minibatch_size": 400,
    "lr": 5e-5,
    "adam_eps": 1e-6,
    "gamma": 0.99,
    "clip_grad_norm": True,
    "clip_grad_val": 5,
    "share_policy_params": True,
    "evaluation_episodes": 10,
    "evaluation_deterministic_actions": True,
    "clip_epsilon": 0.2,
    "entropy_coef": 0.0,
    "critic_coef": 1.0,
    "loss_critic_type": "l2",
    "lmbda": 0.9,
    "scale_mapping": "biased_softplus_1.0",
    "use_tanh_normal": True,
    "share_param_critic": True,
    "num_cells": [256, 256],
}

# (setting, BenchMARL 1.5, ours, how close): "exact", or what differs and why.
MIRRORING = [
    ("frames a batch", "6,000 (on_policy_collected_frames_per_batch)",
     "train_batch_size_per_learner: 6000 (env steps)", "exact"),
    ("envs", "10 vectorized VMAS envs", "num_envs_per_env_runner: 10 (one batched core)",
     "exact"),
    ("minibatches", "45 passes over the batch (on_policy_n_minibatch_iters), each of 15 "
     "minibatches of 400 frames drawn without replacement: 675 updates a batch",
     "num_epochs: 45, minibatch_size: 1200",
     "close: RLlib counts minibatch rows per agent (400 frames x 3 agents = 1,200) and adds "
     "one bootstrap row per episode chunk and agent (about 1% more rows), so an epoch "
     "makes 15 or 16 minibatches"),
    ("learning rate", "lr 5e-5", "lr: 5.0e-5", "exact"),
    ("Adam epsilon", "1e-6", "torch's default 1e-8",
     "differs: RLlib builds Adam with torch's defaults; no setting for it"),
    ("optimizers", "one Adam for the actor, one for the critic, each gradient-norm clipped "
     "at 5", "one Adam over actor and critic, grad_clip: 5.0 on their joint norm",
     "close: RLlib keeps one optimizer per module"),
    ("discount, GAE", "gamma 0.99, lambda 0.9", "gamma: 0.99, lambda_: 0.9", "exact"),
    ("PPO clip", "0.2", "clip_param: 0.2", "exact"),
    ("entropy bonus", "0.0", "entropy_coeff: 0.0", "exact"),
    ("value loss", "l2, weight 1, not clipped", "vf_loss_coeff: 1.0, vf_clip_param: 1e9 "
     "(off), use_value_norm: false", "exact"),
    ("advantages", "not normalized", "standardize_advantages: false", "exact"),
    ("parameter sharing", "one policy for all agents; one critic", "shared_policy: true",
     "exact"),
    ("critic input", "every agent's observation joined (VMAS has no state); one value "
     "for all agents", "global state = every agent's observation joined", "exact"),
    ("networks", "MLP 256-256, Tanh, no norm, torch default init (actor and critic)",
     "hidden_sizes: [256, 256], tanh, orthogonal_init: false, no layer norm", "exact"),
    ("agent id", "not in the observation", "agent_id_in_obs: false", "exact"),
    ("action distribution", "TanhNormal on the action box: samples squashed; loc and "
     "scale from the network, scale = biased softplus (1 at init)",
     "action_distribution: tanh_normal: the same squash, scale and floor",
     "close: the entropy we report is the Gaussian's before the squash (unused: no bonus)"),
    ("horizon", "100 steps, the end marked terminated (torchrl's VmasEnv): no bootstrap",
     "max_steps: 100, truncated; RLlib marks a multi-agent episode terminated once every "
     "agent is done, so no bootstrap either", "exact"),
    ("processes", "collection and training in one process", "num_env_runners: 0",
     "exact"),
    ("greedy evaluation", "10 episodes, deterministic actions, after the last iteration "
     "(and after the first, which the bench ignores)", "10 episodes of the final "
     "policy's mean action on the batched core", "exact"),
    ("training curve", "mean return of the episodes finished in each batch, per agent",
     "episode_return_mean (the episodes finished in the iteration, at most the last 100) "
     "/ agents", "exact (60 episodes a batch)"),
]  # fmt: skip

MARK = "@@bench "
DRIVER = r"""
import dataclasses, json, sys, time
from importlib.metadata import version

T0 = time.perf_counter()
spec = json.loads(sys.argv[1])


def emit(kind, **data):
    print("@@bench " + json.dumps({"kind": kind, **data}, default=str), flush=True)


import torch
from benchmarl.algorithms import IppoConfig, MappoConfig
from benchmarl.environments import VmasTask
from benchmarl.experiment import Callback, Experiment, ExperimentConfig
from benchmarl.models.mlp import MlpConfig

config = ExperimentConfig.get_from_yaml()
algorithm = {"mappo": MappoConfig, "ippo": IppoConfig}[spec["algorithm"]].get_from_yaml()
task = getattr(VmasTask, spec["task"].upper()).get_from_yaml()
model = MlpConfig.get_from_yaml()
if spec["mode"] == "defaults":
    emit(
        "defaults",
        experiment=dataclasses.asdict(config),
        algorithm=dataclasses.asdict(algorithm),
        task=task.config,
        model=dataclasses.asdict(model),
        versions={p: version(p) for p in ("benchmarl", "torchrl", "tensordict", "torch", "vmas")},
        torch_threads=torch.get_num_threads(),
    )
    sys.exit(0)

for key, value in (spec["setup"] or {}).items():  # None: its defaults
    setattr(config, key, value)
config.max_n_frames = spec["frames"]
config.loggers = []
config.render = False
config.checkpoint_interval = 0
config.checkpoint_at_end = False
config.save_folder = spec["save_folder"]
if spec["mode"] == "throughput":
    config.evaluation = False
else:  # evaluated after the first iteration (always) and the last; create_json records it
    config.evaluation = True
    config.evaluation_interval = spec["frames"]
    config.evaluation_episodes = spec["episodes"]
    config.create_json = True


class Record(Callback):
    def on_batch_collected(self, batch):
        ret = float(self.experiment.mean_return)
        emit("batch", frames=self.experiment.total_frames, wall_s=time.perf_counter() - T1,
             episode_return=None if ret != ret else ret)

    def on_train_end(self, training_td, group):
        emit("trained", frames=self.experiment.total_frames, wall_s=time.perf_counter() - T1)

    def on_evaluation_end(self, rollouts):
        groups = list(self.experiment.group_map)
        returns = [  # per episode: the sum over time, the mean over agents and groups
            sum(float(td.get(("next", g, "reward")).sum(0).mean()) for g in groups) / len(groups)
            for td in rollouts
        ]
        emit("evaluation", frames=self.experiment.total_frames, returns=returns)


T1 = time.perf_counter()
experiment = Experiment(
    task=task, algorithm_config=algorithm, model_config=model,
    critic_model_config=MlpConfig.get_from_yaml(), seed=spec["seed"], config=config,
    callbacks=[Record()],
)
emit("setup", wall_s=time.perf_counter() - T1)
experiment.run()
emit("done", wall_s=time.perf_counter() - T1, frames=experiment.total_frames)
"""


# --------------------------------------------------------------------------- BenchMARL side


class BenchmarlError(RuntimeError):
    """The BenchMARL driver failed; the message ends with its output's tail."""


def run_driver(python: str, spec: dict, echo: bool = False) -> list[dict]:
    """Run the driver with BenchMARL's Python; its ``@@bench`` records, in order."""
    with tempfile.TemporaryDirectory(prefix="bench-benchmarl-") as tmp:
        script = Path(tmp) / "driver.py"
        script.write_text(DRIVER)
        spec = {**spec, "save_folder": tmp}
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        errors = Path(tmp) / "stderr.txt"
        with errors.open("w") as stderr:  # tqdm's progress bar and warnings
            proc = subprocess.Popen(
                [python, str(script), json.dumps(spec)],
                cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
            )  # fmt: skip
            records, tail = [], []
            assert proc.stdout is not None
            for line in proc.stdout:
                if MARK in line:
                    records.append(json.loads(line.split(MARK, 1)[1]))
                    if echo and records[-1]["kind"] == "batch":
                        r = records[-1]
                        print(f"    benchmarl {r['frames']:>9,} frames  {r['wall_s']:7.1f} s  "
                              f"return {r['episode_return']}", flush=True)  # fmt: skip
                else:
                    tail = [*tail[-19:], line.rstrip()]
            proc.wait()
        if proc.returncode != 0:
            tail += errors.read_text(errors="replace").splitlines()[-30:]
            raise BenchmarlError(
                f"{python} {spec['mode']} failed (exit {proc.returncode}):\n" + "\n".join(tail)
            )
    return records


def benchmarl_defaults(python: str) -> dict:
    """BenchMARL's installed defaults for MAPPO on VMAS navigation, and its versions."""
    spec = {"mode": "defaults", "algorithm": "mappo", "task": "navigation"}
    (record,) = run_driver(python, spec)
    flat = {**record["experiment"], **record["algorithm"], **record["model"]}
    changed = {
        k: {"expected": v, "installed": flat.get(k)}
        for k, v in BENCHMARL_DEFAULTS.items()
        if flat.get(k) != v
    }
    if changed:
        print(f"warning: BenchMARL's defaults differ from the mirrored ones: {changed}")
    return {"versions": record["versions"], "torch_threads": record["torch_threads"],
            "task_config": record["task"], "changed_defaults": changed}  # fmt: skip


def benchmarl_learning(python, task, algorithm, seed, frames, episodes, setup) -> dict:
    """One BenchMARL run: wall time, curve (frames, per-agent return, s), greedy returns."""
    spec = {"mode": "learning", "task": task, "algorithm": algorithm, "seed": seed,
            "frames": frames, "episodes": episodes, "setup": setup}  # fmt: skip
    records = run_driver(python, spec, echo=True)
    done = next(r for r in records if r["kind"] == "done")
    evaluations = [r for r in records if r["kind"] == "evaluation"]
    final = evaluations[-1]
    if final["frames"] != frames:
        raise BenchmarlError(f"no evaluation at {frames} frames: {evaluations}")
    return {
        "wall_s": done["wall_s"],
        "frames": done["frames"],
        "frames_per_s": done["frames"] / done["wall_s"],
        "curve": [
            (r["frames"], r["episode_return"], r["wall_s"])
            for r in records
            if r["kind"] == "batch" and r["episode_return"] is not None
        ],
        "greedy_returns": final["returns"],
        "greedy_return": float(np.mean(final["returns"])),
    }


def benchmarl_throughput(python: str, setup: dict) -> dict:
    """Frames/s of BenchMARL's MAPPO, one pass a batch, the first iteration left out."""
    batch, iterations = setup["batch"], setup["iterations"]
    spec = {
        "mode": "throughput", "task": setup["task"], "algorithm": "mappo", "seed": 0,
        "frames": batch * iterations, "episodes": 0,
        "setup": {
            "on_policy_collected_frames_per_batch": batch,
            "on_policy_n_envs_per_worker": setup["envs"],
            "on_policy_n_minibatch_iters": 1,
            "on_policy_minibatch_size": batch,
        },
    }  # fmt: skip
    ends = [r["wall_s"] for r in run_driver(python, spec) if r["kind"] == "trained"]
    elapsed = ends[-1] - ends[0]
    return {
        "iterations_timed": len(ends) - 1,
        "iteration_s": [float(x) for x in np.diff(ends)],
        "frames_per_s": batch * (len(ends) - 1) / elapsed,
    }


# --------------------------------------------------------------------------- our side


def our_raw(task: str, algorithm: str, seed: int, frames: int, setup: dict | None) -> dict:
    """Our mirrored experiment as a dict: `setup` (BenchMARL's sizes) mirrored into it."""
    raw = yaml.safe_load(TASKS[task].read_text())
    raw["name"] = f"standard_{task}_{algorithm}"
    raw["seed"] = seed
    raw["algorithm"]["id"] = algorithm
    raw["stop"] = {"env_steps": frames}
    if setup:
        agents = raw["env"]["config"]["n_agents"]
        raw["algorithm"]["hyperparams"].update(mirrored_sizes(setup, agents))
        raw["resources"]["num_envs_per_env_runner"] = setup["on_policy_n_envs_per_worker"]
    return raw


def mirrored_sizes(setup: dict, agents: int) -> dict:
    """BenchMARL's batch and minibatch sizes (frames) as RLlib's (env steps, agent rows)."""
    # BenchMARL's on-policy loop (Experiment._collection_loop): for each of the
    # n_minibatch_iters, ceil(batch / minibatch) minibatches drawn without replacement,
    # i.e. n_minibatch_iters passes (epochs) over the batch.
    batch = setup["on_policy_collected_frames_per_batch"]
    minibatch = setup["on_policy_minibatch_size"]
    if batch % minibatch:
        raise ValueError(f"{setup}: the minibatches do not split the batch evenly")
    return {"train_batch_size_per_learner": batch, "minibatch_size": minibatch * agents,
            "num_epochs": setup["on_policy_n_minibatch_iters"]}  # fmt: skip


def our_learning(task, algorithm, seed, frames, episodes, setup, output: Path) -> dict:
    """One run of ours (``rlp train``'s path): wall time, curve, greedy returns."""
    from rl_platform.config import load_experiment
    from rl_platform.evaluation.policy import policy_scores
    from rl_platform.ray_session import shutdown_ray
    from rl_platform.training import train

    raw = our_raw(task, algorithm, seed, frames, setup)
    agents = raw["env"]["config"]["n_agents"]
    rows = []
    started = time.perf_counter()
    try:
        result = train(load_experiment(raw), output=output, progress=rows.append)
        trained = time.perf_counter() - started
        scores = policy_scores(result.last_checkpoint, episodes=episodes, seed=EVAL_SEED)
        wall = time.perf_counter() - started
    finally:
        shutdown_ray()  # BenchMARL's next run gets the machine to itself
    for row in rows:
        print(f"    ours      {row.env_steps:>9,} frames  {row.time_total_s:7.1f} s  "
              f"return {row.episode_return_mean / agents}", flush=True)  # fmt: skip
    return {
        "wall_s": wall,
        "train_s": trained,
        "frames": result.env_steps,
        "frames_per_s": result.env_steps / wall,
        "curve": [
            (r.env_steps, r.episode_return_mean / agents, r.time_total_s)
            for r in rows
            if np.isfinite(r.episode_return_mean)
        ],
        "greedy_returns": [float(s) for s in scores],
        "greedy_return": float(np.mean(scores)),
    }


def our_throughput(setup: dict) -> dict:
    """Frames/s of our MAPPO, one pass a batch, the first iteration left out."""
    from rl_platform.builder import build_algorithm_config
    from rl_platform.config import load_experiment
    from rl_platform.ray_session import init_ray, shutdown_ray

    batch, envs, iterations = setup["batch"], setup["envs"], setup["iterations"]
    raw = our_raw("navigation", "mappo", 0, batch * iterations, None)
    raw["name"] = "standard_throughput"
    raw["env"] = {
        "id": f"vmas:{setup['task']}",
        "config": {"n_agents": 3, "obs_agents": True, "max_steps": 100,
                   "continuous_actions": True},
    }  # fmt: skip
    agents = raw["env"]["config"]["n_agents"]
    raw["algorithm"]["hyperparams"].update(
        train_batch_size_per_learner=batch, minibatch_size=batch, num_epochs=1
    )
    raw["resources"]["num_envs_per_env_runner"] = envs
    # One minibatch of the whole batch: RLlib's minibatches count agent rows, one more per
    # episode chunk and agent (the bootstrap row), and its config check wants a minibatch
    # no larger than the batch in env steps, so the size is set past that check.
    steps = batch // envs  # per env copy, in episodes of max_steps (simple_spread has no end)
    rows = envs * (steps + -(-steps // raw["env"]["config"]["max_steps"])) * agents
    logging.getLogger("ray.rllib").setLevel(logging.ERROR)  # RLlib warns of that size
    config = build_algorithm_config(load_experiment(raw))
    config.training(minibatch_size=rows).experimental(_validate_config=False)
    init_ray()
    try:
        algo = config.build_algo()
        try:
            ends, trained_rows, parts = [], [], []
            for _ in range(iterations):
                result = algo.train()
                ends.append(time.perf_counter())
                learner = next(iter(result["learners"].values()))
                trained_rows.append(int(learner.get("num_module_steps_trained", -1)))
                parts.append(time_split(result))
        finally:
            algo.stop()
    finally:
        shutdown_ray()
    return {
        "iterations_timed": iterations - 1,
        "iteration_s": [float(x) for x in np.diff(ends)],
        "frames_per_s": batch * (iterations - 1) / (ends[-1] - ends[0]),
        "minibatch_rows": rows,
        "rows_trained_per_iteration": trained_rows,  # == minibatch_rows: one pass
        # Where an iteration's time goes (RLlib's timers), the warm-up iteration left out.
        "seconds_per_iteration": {k: float(np.mean([p[k] for p in parts[1:]])) for k in parts[0]},
    }


def time_split(result: dict) -> dict:
    """Seconds of one iteration: sampling, the learner connectors (GAE...), the update."""
    timers = result.get("timers", {})
    connector = result["learners"]["__all_modules__"]["learner_connector"]
    steps = connector.get("timers", {}).get("connectors", {})
    return {
        "sampling": timers.get("env_runner_sampling_timer", float("nan")),
        "learner": timers.get("learner_update_timer", float("nan")),
        "learner_connectors": connector.get("connector_pipeline_timer", float("nan")),
        "of_which_gae": next(  # RLlib's piece or ours (EpisodeGAE), by their timer names
            (v for k, v in steps.items() if "gae" in k or "advantage" in k), float("nan")
        ),
    }


# --------------------------------------------------------------------------- report


def bootstrap_ci(values, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of `values`."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    means = np.random.default_rng(seed).choice(x, (resamples, len(x))).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def summary(runs: list[dict]) -> dict:
    """Per framework over seeds: wall time, frames/s, greedy return with its 95% CI."""
    greedy = [r["greedy_return"] for r in runs]
    return {
        "wall_s": float(np.mean([r["wall_s"] for r in runs])),
        "frames_per_s": float(np.mean([r["frames_per_s"] for r in runs])),
        "greedy_return": float(np.mean(greedy)),
        "greedy_return_ci95": bootstrap_ci(greedy),
    }


def learning_targets(ours: dict, theirs: dict) -> dict:
    """Returns not worse (ours higher, or the intervals overlap); wall time <= 1/3."""
    overlap = ours["greedy_return_ci95"][1] >= theirs["greedy_return_ci95"][0]
    ratio = ours["wall_s"] / theirs["wall_s"]
    return {
        "return_difference": ours["greedy_return"] - theirs["greedy_return"],
        "returns_not_worse": bool(ours["greedy_return"] >= theirs["greedy_return"] or overlap),
        "wall_time_ratio": ratio,
        "wall_time_at_most_a_third": bool(ratio <= 1 / 3),
    }


def plot(learning: dict, frames: int, path: Path) -> None:
    """One panel per (task, algorithm): both frameworks' curves, mean and min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(2, len(learning))
    rows = -(-len(learning) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.5 * rows), squeeze=False)
    for ax in axes.flat[len(learning) :]:
        ax.set_visible(False)
    for ax, (key, frameworks) in zip(axes.flat, learning.items(), strict=False):
        for i, (name, result) in enumerate(frameworks["frameworks"].items()):
            curves = [r["curve"] for r in result["runs"]]
            label = f"{name} (greedy at the end {result['summary']['greedy_return']:.2f})"
            if min(len(c) for c in curves) < 2:  # too short to draw (--quick): the points
                points = [p for c in curves for p in c]
                ax.plot([p[0] for p in points], [p[1] for p in points], "o", color=f"C{i}",
                        label=label)  # fmt: skip
                continue
            grid = np.linspace(max(c[0][0] for c in curves), min(c[-1][0] for c in curves), 60)
            values = np.array([np.interp(grid, [p[0] for p in c], [p[1] for p in c])
                               for c in curves])  # fmt: skip
            ax.plot(grid, values.mean(0), color=f"C{i}", label=label)
            ax.fill_between(grid, values.min(0), values.max(0), color=f"C{i}", alpha=0.2)
        ax.set_xlim(0, frames)
        ax.set_xlabel("frames (env steps)")
        ax.set_ylabel("episode return per agent (training)")
        ax.set_title(f"VMAS {key} ({len(frameworks['seeds'])} seeds)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def machine() -> dict:
    """Cores, CPU model, OS, Python and our side's package versions."""
    model = ""
    with_cpuinfo = Path("/proc/cpuinfo")
    if with_cpuinfo.exists():
        for line in with_cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("torch", "ray", "vmas", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "cpus": os.cpu_count(), "cpu_model": model or platform.processor(),
        "platform": platform.platform(), "python": platform.python_version(),
        "versions": versions,
    }  # fmt: skip


def commit() -> dict:
    """The checked-out commit, and whether tracked files differ from it."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD").stdout.strip() or None
    return {"commit": head, "dirty": git("diff", "--quiet", "HEAD").returncode != 0}


def main() -> None:  # noqa: C901
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarl-python", help="The Python of BenchMARL's virtualenv.")
    parser.add_argument("--seeds", type=int, nargs="+", help="Default 0 1 2 (--quick: 0).")
    parser.add_argument("--frames", type=int, help="Frames a run; default 300,000.")
    parser.add_argument("--episodes", type=int, default=10, help="Greedy evaluation episodes.")
    parser.add_argument("--full", action="store_true", help="Also IPPO, and balance.")
    parser.add_argument("--quick", action="store_true", help="Tiny budgets (a smoke run).")
    parser.add_argument("--only", choices=("learning", "throughput"))
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    setup = QUICK_SETUP if args.quick else None
    batch = (setup or BENCHMARL_DEFAULTS)["on_policy_collected_frames_per_batch"]
    frames = args.frames or (3 * batch if args.quick else 300_000)
    if frames % batch:
        parser.error(f"--frames must be a multiple of the batch ({batch} frames)")
    stem = "standard_quick" if args.quick else "standard"
    args.output.mkdir(parents=True, exist_ok=True)

    python = args.benchmarl_python
    report: dict = {
        **commit(), "machine": machine(), "quick": args.quick, "frames": frames,
        "seeds": seeds, "eval_episodes": args.episodes,
        "mirroring": [dict(zip(("setting", "benchmarl", "ours", "how_close"), row,
                               strict=True)) for row in MIRRORING],
    }  # fmt: skip
    if python:
        report["benchmarl"] = benchmarl_defaults(python)
        print(f"BenchMARL side: {python} ({report['benchmarl']['versions']})")
    else:
        report["benchmarl"] = None
        note = ("BenchMARL's side skipped: pass --benchmarl-python PATH (its own virtualenv, "
                "see the docstring); only ours runs")  # fmt: skip
        report["note"] = note
        print(note)

    if args.only != "throughput":
        combos = [("navigation", "mappo")]
        if args.full:
            combos += [("navigation", "ippo"), ("balance", "mappo"), ("balance", "ippo")]
        learning = {}
        with tempfile.TemporaryDirectory(prefix="bench-standard-") as runs:
            for task, algorithm in combos:
                frameworks: dict = {}
                for seed in seeds:
                    print(f"learning: {task} {algorithm} seed {seed}, {frames:,} frames",
                          flush=True)  # fmt: skip
                    if python:
                        run = benchmarl_learning(
                            python, task, algorithm, seed, frames, args.episodes, setup
                        )
                        frameworks.setdefault("benchmarl", {"runs": []})["runs"].append(run)
                    run = our_learning(
                        task, algorithm, seed, frames, args.episodes, setup, Path(runs)
                    )
                    frameworks.setdefault("rl_platform", {"runs": []})["runs"].append(run)
                    # The runs so far, should the bench be stopped before the last seed.
                    partial = args.output / f"{stem}_partial.json"
                    partial.write_text(json.dumps({**report, "partial": {
                        f"{task} {algorithm}": frameworks}}, indent=2) + "\n")  # fmt: skip
                for result in frameworks.values():
                    result["summary"] = summary(result["runs"])
                entry = {"task": task, "algorithm": algorithm, "seeds": seeds,
                         "frameworks": frameworks}  # fmt: skip
                if python:
                    entry["targets"] = learning_targets(
                        frameworks["rl_platform"]["summary"], frameworks["benchmarl"]["summary"]
                    )
                learning[f"{task} {algorithm}"] = entry
        report["learning"] = learning
        plot(learning, frames, args.output / f"{stem}_learning.png")

    if args.only != "learning":
        sizes = QUICK_THROUGHPUT if args.quick else THROUGHPUT
        print(f"throughput: MAPPO on VMAS {sizes['task']}, {sizes['envs']} envs, "
              f"{sizes['batch']:,} frames a batch, one pass", flush=True)  # fmt: skip
        throughput: dict = {"setup": sizes, "frameworks": {}}
        if python:
            throughput["frameworks"]["benchmarl"] = benchmarl_throughput(python, sizes)
        throughput["frameworks"]["rl_platform"] = our_throughput(sizes)
        if python:
            ratio = (throughput["frameworks"]["rl_platform"]["frames_per_s"]
                     / throughput["frameworks"]["benchmarl"]["frames_per_s"])  # fmt: skip
            throughput["targets"] = {"speedup": ratio, "at_least_3x": bool(ratio >= 3)}
        report["throughput"] = throughput

    out = args.output / f"{stem}.json"
    if args.only and out.exists():
        keep_other_half(report, json.loads(out.read_text()), args.only)
    print_report(report)
    (args.output / f"{stem}_partial.json").unlink(missing_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}" + ("" if args.only == "throughput" else f" and {stem}_learning.png"))


def keep_other_half(report: dict, previous: dict, only: str) -> None:
    """Carry the half `only` did not rerun over from the previous JSON, with its provenance.

    Each half then names the commit and machine it came from (``learning_run`` /
    ``throughput_run``), so one file holds both without mixing up where they were measured.
    """
    other = "throughput" if only == "learning" else "learning"
    provenance = ("commit", "dirty", "date", "machine", "frames", "seeds", "eval_episodes")
    report[f"{only}_run"] = {k: report[k] for k in provenance if k in report}
    if other in previous:
        report[other] = previous[other]
        report[f"{other}_run"] = previous.get(f"{other}_run") or {
            k: previous[k] for k in provenance if k in previous
        }


def print_report(report: dict) -> None:
    """The table: per framework wall time, frames/s, greedy return; then the targets."""
    for key, entry in report.get("learning", {}).items():
        print(f"\nlearning, VMAS {key}: {len(entry['seeds'])} seeds x {report['frames']:,} "
              f"frames, greedy return over {report['eval_episodes']} episodes")  # fmt: skip
        print(f"{'framework':>12} {'wall s':>9} {'frames/s':>9} {'greedy':>8}  95% CI")
        for name, result in entry["frameworks"].items():
            s = result["summary"]
            low, high = s["greedy_return_ci95"]
            print(f"{name:>12} {s['wall_s']:9.1f} {s['frames_per_s']:9.0f} "
                  f"{s['greedy_return']:8.3f}  [{low:.3f}, {high:.3f}]")  # fmt: skip
        if "targets" in entry:
            t = entry["targets"]
            print(f"returns not worse: {'met' if t['returns_not_worse'] else 'NOT met'} "
                  f"(ours - BenchMARL = {t['return_difference']:+.3f}); wall time ratio "
                  f"{t['wall_time_ratio']:.2f} (target <= 0.33: "
                  f"{'met' if t['wall_time_at_most_a_third'] else 'NOT met'})")  # fmt: skip
    if "throughput" in report:
        t = report["throughput"]
        print(f"\nthroughput, MAPPO on VMAS {t['setup']['task']}, {t['setup']['envs']} envs, "
              f"{t['setup']['batch']:,} frames a batch, one pass:")  # fmt: skip
        for name, result in t["frameworks"].items():
            print(f"{name:>12} {result['frames_per_s']:9.0f} frames/s")
        if "targets" in t:
            print(f"speedup {t['targets']['speedup']:.1f}x (target >= 3x: "
                  f"{'met' if t['targets']['at_least_3x'] else 'NOT met'})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
