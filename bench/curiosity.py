"""Does curiosity help on a sparse-reward task? IPPO with and without an ICM on landmark.

How to run:
    python bench/curiosity.py                        # 3 seeds x 2 configs, ~3 min on 2 cores
    python bench/curiosity.py --seeds 0 1 2 3 4 5 6 7 8 9
    python bench/curiosity.py --set env.config.wall=false --name open.json   # any override

Trains experiments/landmark_curiosity.yaml (two agents, 15x15 grid, the landmark behind a
wall whose only door is at the bottom row, 40 steps, reward only on arrival) to the same
env-step budget with its ``curiosity:`` section and with ``curiosity: null``, for each
seed (``--set`` overrides apply to both). Per run it reads metrics.csv: the training
success rate (share of episodes where both agents arrived, ``reward_success``) and
extrinsic return per agent (``reward_env``) over the last ``--window`` iterations, the
first env step at which the success rate reached 0.5, and the intrinsic reward (raw and
weighted, per step) over training; then it scores the final policy greedily on 50
held-out episodes (``policy_scores``, seed 1000; the greedy success rate is the share of
episodes where every agent arrived). Prints each run, the per-config mean and std, and
Welch's t-test of the training success rates; writes bench/results/curiosity.json (or
``--name``).
"""

import argparse
import csv
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

import rl_platform
from rl_platform.config import load_experiment
from rl_platform.evaluation.baselines import RANDOM, episode_scores
from rl_platform.evaluation.policy import policy_scores
from rl_platform.serving.ab_test import welch_t_test

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "landmark_curiosity.yaml"
CONFIGS = ("ippo", "ippo+curiosity")
SUCCESS_LEVEL = 0.5  # "learned": the training success rate first reaches this


def experiment(config: str, seed: int, steps: int, overrides: list[str]) -> dict:
    """The bench's experiment: the YAML's (with `overrides`), with or without curiosity."""
    data = load_experiment(EXPERIMENT, overrides).model_dump(mode="json")
    data.update(
        name=f"bench_{config.replace('+', '_')}",
        seed=seed,
        stop={"env_steps": steps},
        checkpoint={"every": 0},
    )
    if config == "ippo":
        data["curiosity"] = None
    return data


def read_rows(run_dir: Path) -> list[dict[str, float]]:
    """metrics.csv as float rows (empty cells -> NaN)."""
    with (run_dir / "metrics.csv").open() as handle:
        return [
            {
                k: float(v) if v not in ("", None) else math.nan
                for k, v in row.items()
                if k != "level"
            }
            for row in csv.DictReader(handle)
        ]


def summarize_run(rows: list[dict[str, float]], window: int) -> dict:
    """Training figures of one run from its metrics rows."""
    last = rows[-window:]
    reached = [r["env_steps"] for r in rows if r["reward_success"] >= SUCCESS_LEVEL]
    curve = {
        "env_steps": [r["env_steps"] for r in rows],
        "success": [r["reward_success"] for r in rows],
        "extrinsic_return": [r["reward_env"] for r in rows],
        "intrinsic_reward": [r.get("curiosity_intrinsic_reward", math.nan) for r in rows],
        "intrinsic_weighted": [
            r.get("curiosity_intrinsic_reward_weighted", math.nan) for r in rows
        ],
    }
    return {
        "success": float(np.nanmean([r["reward_success"] for r in last])),
        "extrinsic_return": float(np.nanmean([r["reward_env"] for r in last])),
        "steps_to_success": reached[0] if reached else None,
        "curve": curve,
    }


def thirds(values: list[float]) -> str:
    """Mean of each third of a curve, as "a / b / c" (or "-" without data)."""
    parts = [p for p in np.array_split(np.asarray(values, dtype=float), 3) if len(p)]
    if not parts or np.isnan(np.concatenate(parts)).all():
        return "-"
    return " / ".join(f"{np.mean(p):.3f}" for p in parts)


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--window", type=int, default=5, help="Last iterations averaged.")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="Override the experiment for both configs, e.g. algorithm.hyperparams.lr=3e-4.",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--name", default="curiosity.json", help="File name of the JSON.")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench_curiosity_"))
    env_config = load_experiment(EXPERIMENT, args.overrides).env.config
    random = episode_scores("landmark", RANDOM, env_config, 200, 1000)
    runs = []
    for seed in args.seeds:
        for config in CONFIGS:
            started = time.perf_counter()
            result = rl_platform.train(
                experiment(config, seed, args.steps, args.overrides), output=scratch
            )
            wall = time.perf_counter() - started
            run = summarize_run(read_rows(Path(result.run_dir)), args.window)
            greedy = policy_scores(result.last_checkpoint, episodes=50, seed=1000)
            run.update(
                config=config, seed=seed, wall_s=wall, env_steps=result.env_steps,
                greedy_arrived=float(greedy.mean()), greedy_success=float((greedy >= 1).mean()),
            )  # fmt: skip
            runs.append(run)
            print(
                f"seed {seed} {config:>15}: success {run['success']:.2f}, extrinsic "
                f"{run['extrinsic_return']:.2f}, greedy success {run['greedy_success']:.2f}, "
                f"first >= {SUCCESS_LEVEL} at {run['steps_to_success']} steps ({wall:.0f} s)"
            )
    summary = {}
    for config in CONFIGS:
        mine = [r for r in runs if r["config"] == config]
        figures = {}
        for key in ("success", "extrinsic_return", "greedy_success", "wall_s"):
            figures[key], figures[f"{key}_std"] = mean_std([r[key] for r in mine])
        for key in ("intrinsic_reward", "intrinsic_weighted"):
            curves = np.array([r["curve"][key] for r in mine], dtype=float)
            mean = curves.mean(axis=0) if not np.isnan(curves).all() else curves[0]
            figures[f"{key}_by_third"] = thirds(mean.tolist())
        figures["reached"] = sum(r["steps_to_success"] is not None for r in mine)
        summary[config] = figures
    plain = [r["success"] for r in runs if r["config"] == CONFIGS[0]]
    curious = [r["success"] for r in runs if r["config"] == CONFIGS[1]]
    t, p = welch_t_test(curious, plain) if len(plain) > 1 else (float("nan"), float("nan"))
    print(
        f"\nlandmark {env_config}, {args.steps} env steps per run, {len(args.seeds)} seeds, "
        f"overrides {args.overrides or 'none'}; "
        f"random play: {random.mean():.4f} arrivals per agent, "
        f"success {(random >= 1).mean():.4f}"
    )
    header = (
        f"{'config':>15} | {'train success':>13} | {'extrinsic/agent':>15} | "
        f"{'greedy success':>14} | {'runs >= 0.5':>11} | intrinsic raw (thirds of training)"
        " | weighted"
    )
    print(header)
    print("-" * len(header))
    for config, f in summary.items():
        print(
            f"{config:>15} | {f['success']:.2f} +- {f['success_std']:.2f} | "
            f"{f['extrinsic_return']:>7.2f} +- {f['extrinsic_return_std']:.2f} | "
            f"{f['greedy_success']:>6.2f} +- {f['greedy_success_std']:.2f} | "
            f"{f['reached']:>5}/{len(args.seeds)}     | {f['intrinsic_reward_by_third']} | "
            f"{f['intrinsic_weighted_by_third']}"
        )
    print(f"success, curiosity - plain: {np.mean(curious) - np.mean(plain):+.2f}, "
          f"Welch t = {t:.2f}, p = {p:.3f}")  # fmt: skip
    report = {
        "env_config": env_config, "steps": args.steps, "seeds": args.seeds,
        "overrides": args.overrides,
        "random_arrivals": float(random.mean()), "random_success": float((random >= 1).mean()),
        "runs": runs, "summary": summary, "welch_t": t, "p_value": p,
    }  # fmt: skip
    path = args.output / args.name
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
