"""Does the batched sampler learn like the stock one? MAPPO on resource_allocation, 3 seeds.

How to run:
    python bench/sampler_learning.py                     # 3 seeds x 2 samplers, ~6 min on 2 cores
    python bench/sampler_learning.py --steps 200000 --seeds 0 1 2 3 4

Trains the same MAPPO experiment (4 agents, 3 resources, team reward) to the same env-step
budget with ``resources.sampler: stock`` and ``batched`` for each seed, then scores each
final policy greedily on 50 held-out episodes (``policy_scores``, seed 1000). Prints each
run, the per-sampler mean and std, and Welch's t-test of the difference; writes
bench/results/sampler_learning.json.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import rl_platform
from rl_platform.evaluation.baselines import RANDOM, episode_scores
from rl_platform.evaluation.policy import policy_scores
from rl_platform.serving.ab_test import welch_t_test

ROOT = Path(__file__).resolve().parents[1]
ENV_CONFIG = {"num_agents": 4, "num_resources": 3, "episode_length": 50, "task": "easy"}


def experiment(sampler: str, seed: int, steps: int) -> dict:
    return {
        "name": f"sampler_{sampler}",
        "seed": seed,
        "env": {"id": "resource_allocation", "config": ENV_CONFIG},
        "algorithm": {
            "id": "mappo",
            "shared_policy": True,
            "hyperparams": {
                "lr": 1.0e-3,
                "gamma": 0.5,
                "entropy_coeff": 0.0,
                "train_batch_size_per_learner": 2000,
                "minibatch_size": 500,
                "num_epochs": 5,
            },
        },
        "rewards": {"team": 1.0},
        "resources": {"num_env_runners": 1, "num_envs_per_env_runner": 32, "sampler": sampler},
        "stop": {"env_steps": steps},
        "checkpoint": {"every": 0},
        "evaluation": {"every": 0},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench_sampler_"))
    random = float(episode_scores("resource_allocation", RANDOM, ENV_CONFIG, 50, 1000).mean())
    runs = []
    for seed in args.seeds:
        for sampler in ("stock", "batched"):
            started = time.perf_counter()
            result = rl_platform.train(experiment(sampler, seed, args.steps), output=scratch)
            wall = time.perf_counter() - started
            score = float(policy_scores(result.last_checkpoint, episodes=50, seed=1000).mean())
            runs.append(
                {"sampler": sampler, "seed": seed, "score": score, "wall_s": wall,
                 "env_steps": result.env_steps}
            )  # fmt: skip
            print(f"seed {seed} {sampler:>7}: greedy score {score:.2f} ({wall:.0f} s)")
    summary = {}
    for sampler in ("stock", "batched"):
        scores = [r["score"] for r in runs if r["sampler"] == sampler]
        walls = [r["wall_s"] for r in runs if r["sampler"] == sampler]
        summary[sampler] = {
            "mean": float(np.mean(scores)),
            "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
            "wall_s_mean": float(np.mean(walls)),
        }
    stock = [r["score"] for r in runs if r["sampler"] == "stock"]
    batched = [r["score"] for r in runs if r["sampler"] == "batched"]
    t, p = welch_t_test(batched, stock) if len(stock) > 1 else (float("nan"), float("nan"))
    print(f"random: {random:.2f} per agent and episode")
    for sampler, figures in summary.items():
        print(
            f"{sampler:>7}: {figures['mean']:.2f} +- {figures['std']:.2f} "
            f"(mean wall {figures['wall_s_mean']:.0f} s)"
        )
    print(f"batched - stock: {summary['batched']['mean'] - summary['stock']['mean']:+.2f}, "
          f"Welch t = {t:.2f}, p = {p:.3f}")  # fmt: skip
    report = {"random": random, "steps": args.steps, "runs": runs, "summary": summary,
              "welch_t": t, "p_value": p}  # fmt: skip
    path = args.output / "sampler_learning.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
