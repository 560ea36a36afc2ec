"""Credit assignment: the plain team reward vs difference rewards on the coverage game.

How to run:
    python bench/credit_assignment.py                       # 6 agents, 6 targets, PPO
    python bench/credit_assignment.py --seeds 5 --env-steps 100000 --set env.config.num_agents=10

Every agent of `coverage` is paid the team's coverage; with ``rewards.difference: true``
each is paid its own contribution instead (the team reward minus the team reward had it
stayed idle). Both variants train the same PPO (one shared policy; agents see their
index) for the same env steps and seeds. The figure compared is the *task score*: the
per-agent episode return of the team reward (``env_runners/rewards/env``, a mean over
the last 100 training episodes), normalized so that random play is 0 and the greedy
assignment (optimal) is 1. Reports the score at a quarter, half and all of the budget
and the env steps to first reach 0.8; writes bench/results/credit_assignment.json and
a .png of the curves (mean and min-max over seeds).
"""

import argparse
import csv
import json
import logging
import time
from pathlib import Path

import numpy as np

from rl_platform.config import load_experiment
from rl_platform.evaluation.baselines import RANDOM, episode_scores
from rl_platform.training import train

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"team": {}, "difference": {"difference": True}}
# Each step is nearly a one-shot game (only last step's occupancy links steps): a short
# horizon (gamma 0.5) and a larger step size suit both variants alike.
HYPERPARAMS = {
    "lr": 1e-3,
    "gamma": 0.5,
    "train_batch_size_per_learner": 2000,
    "minibatch_size": 500,
    "num_epochs": 4,
}


def experiment_for(variant, seed, env_steps, overrides):
    raw = {
        "name": f"credit_{variant}",
        "seed": seed,
        "env": {"id": "coverage"},
        "algorithm": {"id": "ppo", "hyperparams": dict(HYPERPARAMS)},
        "rewards": dict(VARIANTS[variant]),
        "resources": {"num_env_runners": 1, "num_envs_per_env_runner": 4},
        "stop": {"env_steps": env_steps},
        "checkpoint": {"every": 0, "keep": 1},
    }
    return load_experiment(raw, overrides)


def curve(run_dir):
    """(env steps, task score) per iteration, from the run's metrics.csv."""
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    return [(int(r["env_steps"]), float(r["reward_env"])) for r in rows if r["reward_env"] != "nan"]


def score_at(points, steps):
    """The last task score recorded at or before `steps` env steps."""
    before = [score for at, score in points if at <= steps]
    return before[-1] if before else float("nan")


def steps_to(points, target):
    return next((at for at, score in points if score >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--env-steps", type=int, default=60_000)
    parser.add_argument("--set", action="append", default=[], help="override key.path=value")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    args.output.mkdir(parents=True, exist_ok=True)

    probe = experiment_for("team", 0, args.env_steps, args.set)
    env_config = probe.env.config
    low = float(episode_scores("coverage", RANDOM, env_config, 500, seed=1000).mean())
    high = float(episode_scores("coverage", "greedy", env_config, 500, seed=1000).mean())
    print(f"coverage {env_config}: random {low:.3f}, greedy {high:.3f} (task score 0 and 1)")

    runs = {variant: [] for variant in VARIANTS}
    for seed in range(args.seeds):
        for variant in VARIANTS:
            experiment = experiment_for(variant, seed, args.env_steps, args.set)
            started = time.monotonic()
            result = train(experiment, output=ROOT / "runs" / "bench")
            points = [(at, (s - low) / (high - low)) for at, s in curve(result.run_dir)]
            runs[variant].append(
                {
                    "seed": seed,
                    "curve": points,
                    "wall_s": time.monotonic() - started,
                    "env_steps_per_s": result.env_steps_per_s,
                }
            )
            print(
                f"{variant:>10} seed {seed}: final {points[-1][1]:.3f}, "
                f"0.8 at {steps_to(points, 0.8)} steps, {result.env_steps_per_s:,.0f} steps/s"
            )

    marks = [args.env_steps // 4, args.env_steps // 2, args.env_steps]
    summary = {}
    for variant, seeds in runs.items():
        at_marks = {m: [score_at(r["curve"], m) for r in seeds] for m in marks}
        reach = [steps_to(r["curve"], 0.8) for r in seeds]
        summary[variant] = {
            "score_at": {
                m: [float(np.mean(v)), float(np.min(v)), float(np.max(v))]
                for m, v in at_marks.items()
            },
            "steps_to_0.8": reach,
            "env_steps_per_s": float(np.mean([r["env_steps_per_s"] for r in seeds])),
        }
    print(f"\nnormalized task score (mean [min, max] over {args.seeds} seeds); random 0, greedy 1")
    print(f"{'variant':>10} " + " ".join(f"{m:>22,}" for m in marks) + "   steps to 0.8")
    for variant, s in summary.items():
        cells = " ".join(f"{v[0]:>8.3f} [{v[1]:.2f}, {v[2]:.2f}]" for v in s["score_at"].values())
        print(f"{variant:>10} {cells}   {s['steps_to_0.8']}")

    report = {
        "env": "coverage",
        "env_config": env_config,
        "algorithm": "ppo",
        "hyperparams": probe.algorithm.hyperparams,
        "env_steps": args.env_steps,
        "seeds": args.seeds,
        "random_score": low,
        "greedy_score": high,
        "summary": summary,
        "runs": runs,
    }
    path = args.output / "credit_assignment.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    _plot(runs, args.output / "credit_assignment.png")


def _plot(runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for variant, seeds in runs.items():
        grid = sorted({at for r in seeds for at, _ in r["curve"]})
        values = np.array([[score_at(r["curve"], at) for at in grid] for r in seeds])
        ax.plot(grid, np.nanmean(values, axis=0), label=variant)
        ax.fill_between(grid, np.nanmin(values, axis=0), np.nanmax(values, axis=0), alpha=0.2)
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=0.8, label="greedy (optimal)")
    ax.axhline(0.0, color="gray", linestyle=":", linewidth=0.8, label="random")
    ax.set_xlabel("env steps")
    ax.set_ylabel("normalized task score")
    ax.set_title("coverage: team reward vs difference rewards (PPO)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
