"""Optuna TPE + ASHA vs random search without early stopping, with the same trial budget.

Both run ``rl_platform.tune`` (the platform's sweep: the same builder as ``rlp train``,
Tune trials, an Optuna study) on one small task, PPO on rendezvous (3 agents, 25-step
episodes, 400 env steps per iteration, no remote env runner, so two trials run at once
on 2 cores), over the seed's default search space resolved for PPO (lr, gamma, entropy
coefficient, minibatch size, network). Per repeat (seeds 0, 1, 2), each method gets the
same number of trials:

* ``tpe_asha``: Optuna's TPE (random for the first ``--startup`` trials), ASHA with a
  grace period of 2 iterations and reduction factor 2;
* ``random``: Optuna's random sampler, every trial runs all ``--iterations``.

Reported per sweep: the best score found (the final mean episode return, summed over the
agents, of the best trial that ran all iterations; higher is better), the compute spent
(env steps sampled by all trials), wall time and how many trials ASHA stopped.

Run:  python bench/hpo.py [--repeats 3] [--samples 8] [--iterations 6]
Writes bench/results/hpo.json and hpo.png. About 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "hpo.json"
RUNS = Path(__file__).resolve().parents[1] / "runs" / "bench" / "hpo"
METHODS = {
    "tpe_asha": {"searcher": "optuna", "scheduler": "asha"},
    "random": {"searcher": "random", "scheduler": "none"},
}


def sweep(method: str, seed: int, samples: int, iterations: int, startup: int) -> dict:
    """The sweep YAML of one method and repeat (as a dict)."""
    return {
        "name": f"hpo_{method}_{seed}",
        "seed": seed,
        "env": {"id": "rendezvous", "config": {"num_agents": 3, "episode_length": 25}},
        "algorithm": {
            "id": "ppo",
            "shared_policy": True,
            "hyperparams": {
                "lr": 1e-3,
                "gamma": 0.95,
                "train_batch_size_per_learner": 400,
                "minibatch_size": 100,
                "num_epochs": 5,
            },
        },
        "rewards": {"weights": {"proximity": 1.0, "effort": 0.05}},
        "resources": {"num_env_runners": 0, "num_envs_per_env_runner": 4},
        "stop": {"training_iteration": iterations},
        "checkpoint": {"every": 0, "keep": 1},
        "tune": {
            **METHODS[method],
            "num_samples": samples,
            "max_concurrent_trials": 2,
            "startup_trials": startup,
            "grace_period": 2,
            "reduction_factor": 2,
            "search_space": {},  # the seed's space
        },
    }


def run(args: argparse.Namespace) -> list[dict]:
    from rl_platform.ray_session import init_ray
    from rl_platform.tuning import tune

    init_ray()
    rows = []
    for seed in range(args.repeats):
        for method in METHODS:
            spec = sweep(method, seed, args.samples, args.iterations, args.startup)
            started = time.monotonic()
            result = tune(spec, output=RUNS)
            wall = time.monotonic() - started
            counts = result.counts()
            row = {
                "method": method,
                "seed": seed,
                "best_score": result.best.value if result.best else None,
                "best_params": result.best.params if result.best else None,
                "env_steps": result.env_steps,
                "wall_time_s": round(wall, 1),
                "trials": len(result.trials),
                "complete": counts.get("complete", 0),
                "stopped_early": counts.get("stopped early", 0),
                "failed": counts.get("error", 0),
                "sweep_dir": str(result.sweep_dir),
            }
            rows.append(row)
            print(
                f"{method:>9} seed {seed}: best {row['best_score']:8.2f}  env steps "
                f"{row['env_steps']:>7,}  wall {wall:6.1f} s  stopped early "
                f"{row['stopped_early']}/{row['trials']}",
                flush=True,
            )
    return rows


def summarize(rows: list[dict]) -> dict:
    out = {}
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        scores = [r["best_score"] for r in mine if r["best_score"] is not None]
        out[method] = {
            "best_score_mean": statistics.fmean(scores),
            "best_score_per_seed": scores,
            "env_steps_mean": statistics.fmean(r["env_steps"] for r in mine),
            "wall_time_s_mean": statistics.fmean(r["wall_time_s"] for r in mine),
        }
    tpe, rnd = out["tpe_asha"], out["random"]
    out["compute_ratio_tpe_asha_vs_random"] = tpe["env_steps_mean"] / rnd["env_steps_mean"]
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for method, marker in zip(METHODS, ("o", "s")):
        mine = [r for r in rows if r["method"] == method and r["best_score"] is not None]
        axes.scatter(
            [r["env_steps"] for r in mine],
            [r["best_score"] for r in mine],
            marker=marker,
            s=60,
            label=method,
        )
        for r in mine:
            axes.annotate(f"seed {r['seed']}", (r["env_steps"], r["best_score"]), fontsize=7)
    axes.set_xlabel("env steps spent by the sweep")
    axes.set_ylabel("best final episode return (summed over agents)")
    axes.set_title("TPE + ASHA vs random search, same number of trials")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=8, help="Trials per sweep.")
    parser.add_argument("--iterations", type=int, default=6, help="Iterations per full trial.")
    parser.add_argument("--startup", type=int, default=3, help="TPE's random trials first.")
    args = parser.parse_args()

    rows = run(args)
    summary = summarize(rows)
    print()
    header = ("method", "best score: mean (per seed)", "env steps", "wall s")
    print(f"{header[0]:>9} {header[1]:<36} {header[2]:>9} {header[3]:>7}")
    for method in METHODS:
        s = summary[method]
        per_seed = ", ".join(f"{v:.2f}" for v in s["best_score_per_seed"])
        score = f"{s['best_score_mean']:.2f} ({per_seed})"
        print(f"{method:>9} {score:<36} {s['env_steps_mean']:>9,.0f} {s['wall_time_s_mean']:>7.1f}")
    ratio = summary["compute_ratio_tpe_asha_vs_random"]
    print(f"TPE + ASHA used {ratio:.0%} of random search's env steps.")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    config = {k: getattr(args, k) for k in ("repeats", "samples", "iterations", "startup")}
    task = sweep("tpe_asha", 0, args.samples, args.iterations, args.startup)
    task.pop("tune")
    RESULTS.write_text(
        json.dumps({"config": config, "task": task, "summary": summary, "runs": rows}, indent=2)
        + "\n"
    )
    plot(rows, RESULTS.with_suffix(".png"))
    print(f"wrote {RESULTS} and {RESULTS.with_suffix('.png')}")


if __name__ == "__main__":
    main()
