"""Recurrent vs feed-forward MAPPO on a memory task: the cue is only in the first observation.

Env ``memory_cue`` (rl_platform/envs/memory_cue.py): each of 2 agents sees its cue (one of
3) at t = 0, then ``delay`` blank observations, and earns 1 at the last step when its
action equals its cue. Without memory the best greedy return is chance (1/3); with
memory it is 1. Both variants are the platform's MAPPO (shared policy, value
normalization, the same MLP), the recurrent one with ``recurrent: true`` (a GRU after
the MLP in actor and critic, chunks of ``chunk_length`` steps). After training, the
greedy policy (carrying its state through each episode, the evaluation's
:class:`~rl_platform.evaluation.policy.TrainedPolicy`) plays 300 episodes on the env's
batched core.

Run:  python bench/memory.py [--seeds 3] [--iterations 30]
Writes bench/results/memory.json and memory.png (training curves, mean and min-max over
seeds). About 1-2 minutes on 2 cores (both variants on the batched sampler).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
from provenance import commit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "memory.json"
ENV_CONFIG = {"n_agents": 2, "n_cues": 3, "delay": 6}
CHANCE = 1.0 / ENV_CONFIG["n_cues"]
EVAL_EPISODES = 300
VARIANTS = {"recurrent": True, "feedforward": False}


def experiment(recurrent: bool, seed: int, iterations: int) -> dict:
    """One run's experiment (the platform's YAML shape)."""
    return {
        "name": f"memory_{'rnn' if recurrent else 'mlp'}_{seed}",
        "seed": seed,
        "env": {"id": "memory_cue", "config": dict(ENV_CONFIG)},
        "algorithm": {
            "id": "mappo",
            "shared_policy": True,
            "network": {"hidden_sizes": [32]},
            "hyperparams": {
                "recurrent": recurrent,
                "chunk_length": 10,  # the MAPPO paper's data_chunk_length; episodes are 7 steps
                "lr": 3e-3,
                "train_batch_size_per_learner": 700,
                "minibatch_size": 350,
                "num_epochs": 5,
            },
        },
        "resources": {"num_env_runners": 0, "num_envs_per_env_runner": 8},
        "stop": {"training_iteration": iterations},
        "evaluation": {"every": 0},
    }


def greedy_scores(trainer, experiment_spec: dict, episodes: int, seed: int) -> np.ndarray:
    """Per-episode mean agent return of the greedy policy on the env's batched core."""
    from rl_platform import registry
    from rl_platform.evaluation.policy import TrainedPolicy

    entry = registry.get_env("memory_cue")
    env_cls = entry.load()
    config = {**experiment_spec["env"]["config"], **entry.bound_config}
    agents = [f"agent_{i}" for i in range(ENV_CONFIG["n_agents"])]
    policy = TrainedPolicy.from_modules(
        {"shared": trainer.get_module("shared")}, dict.fromkeys(agents, "shared")
    )
    core = env_cls.core_cls(env_cls.config_model.model_validate(config), episodes)
    policy.reset()
    return core.play_episodes(policy.actions, np.random.default_rng(seed))


def run(recurrent: bool, seed: int, iterations: int) -> dict:
    """Train one seed; its training curve and greedy return."""
    from rl_platform.builder import build_algorithm_config
    from rl_platform.config import load_experiment

    spec = experiment(recurrent, seed, iterations)
    trainer = build_algorithm_config(load_experiment(spec)).build_algo()
    curve, steps = [], []
    t0 = time.time()
    try:
        for _ in range(iterations):
            result = trainer.train()
            ret = result["env_runners"].get("episode_return_mean", np.nan)
            curve.append(float(ret) / ENV_CONFIG["n_agents"])  # per agent
            steps.append(int(result.get("num_env_steps_sampled_lifetime", 0)))
        scores = greedy_scores(trainer, spec, EVAL_EPISODES, seed=1000 + seed)
    finally:
        trainer.stop()
    return {
        "seed": seed,
        "greedy_return": float(scores.mean()),
        "training_return_per_agent": curve,
        "env_steps": steps,
        "wall_s": round(time.time() - t0, 1),
    }


def bootstrap_ci(values: list[float], n: int = 10_000, seed: int = 0) -> list[float]:
    """95% percentile bootstrap interval of the mean (resampling seeds)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(values)
    means = rng.choice(x, size=(n, len(x)), replace=True).mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def plot(summary: dict, path: Path) -> None:
    """Training return per agent against env steps: mean and min-max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, variant in summary["variants"].items():
        curves = np.array([r["training_return_per_agent"] for r in variant["runs"]])
        steps = np.array(variant["runs"][0]["env_steps"])
        ax.plot(steps, curves.mean(0), label=f"{name} MAPPO")
        ax.fill_between(steps, curves.min(0), curves.max(0), alpha=0.25)
    ax.axhline(CHANCE, color="grey", ls="--", lw=1, label="chance (no memory)")
    ax.axhline(1.0, color="black", ls=":", lw=1, label="remembers the cue")
    ax.set_xlabel("env steps")
    ax.set_ylabel("return per agent (training)")
    ax.set_title(f"memory_cue (delay {ENV_CONFIG['delay']}), {summary['seeds']} seeds")
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()

    import torch

    from rl_platform.ray_session import init_ray, shutdown_ray

    torch.set_num_threads(1)  # tiny networks: extra threads only contend on 2 cores
    init_ray(num_cpus=2)  # a private Ray on 127.0.0.1 (rl_platform.ray_session)
    logging.getLogger("ray.rllib").setLevel(logging.ERROR)
    summary: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "note": "2 cores shared with other work while this ran; wall times are loose",
        },
        "commit": commit(),
        "env": {"id": "memory_cue", "config": ENV_CONFIG, "chance": CHANCE, "best": 1.0},
        "iterations": args.iterations,
        "seeds": args.seeds,
        "eval_episodes_per_seed": EVAL_EPISODES,
        "experiment": experiment(True, 0, args.iterations),
        "variants": {},
    }
    start = time.time()
    try:
        for name, recurrent in VARIANTS.items():
            runs = [run(recurrent, seed, args.iterations) for seed in range(args.seeds)]
            greedy = [r["greedy_return"] for r in runs]
            summary["variants"][name] = {
                "recurrent": recurrent,
                "greedy_return_mean": float(np.mean(greedy)),
                "greedy_return_ci95": bootstrap_ci(greedy),
                "greedy_returns": greedy,
                "runs": runs,
            }
            print(
                f"{name:12s} greedy return per agent {np.mean(greedy):.3f} "
                f"(seeds: {' '.join(f'{g:.3f}' for g in greedy)}; chance {CHANCE:.3f})",
                flush=True,
            )
    finally:
        shutdown_ray()
    summary["wall_time_s"] = round(time.time() - start, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    plot(summary, RESULTS.with_suffix(".png"))
    print(f"total {summary['wall_time_s']} s; wrote {RESULTS} and {RESULTS.with_suffix('.png')}")


if __name__ == "__main__":
    main()
