"""Few-shot adaptation from meta-trained weights vs training from scratch, same budget.

How to run:
    python bench/meta.py                        # ~6 min on 2 cores
    python bench/meta.py --tasks e s            # meeting points outside the trained arc
    python bench/meta.py --iterations 1 --seeds 0 1 2 3 4

Meta-trains experiments/meeting_point_meta.yaml once (Reptile over four meeting points of
the northern arc, 40 PPO iterations), then for each held-out meeting point (ne, n, nw:
between the trained ones) and seed trains N iterations (default 2, 2,000 env steps)
with ``rl_platform.adapt`` from the meta-weights and with ``scratch=True`` from fresh
weights, and scores each final policy
greedily on 50 episodes of that task (``policy_scores``, seed 1000; mean per-agent
return). Also scores the meta-weights before adaptation (zero-shot), the env's
``centroid`` baseline (meets, but where it cannot know) and random moves. Prints each
run, mean +- std per start and Welch's t-test of adapted vs scratch per task and over
all; writes bench/results/meta.json (meta_<tasks>.json with --tasks).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import rl_platform
from rl_platform.advanced.meta import task_overrides
from rl_platform.envs.meeting_point import MeetingPointEnv
from rl_platform.evaluation.baselines import RANDOM, episode_scores
from rl_platform.evaluation.policy import policy_scores
from rl_platform.serving.ab_test import welch_t_test

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "meeting_point_meta.yaml"
EPISODES, EVAL_SEED = 50, 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=2, help="Adaptation budget.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", nargs="+", default=None, help="Default: meta.held_out.")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="key=value")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(tempfile.mkdtemp(prefix="bench_meta_"))

    started = time.perf_counter()
    meta = rl_platform.train(str(EXPERIMENT), args.overrides, output=runs_dir)
    meta_wall = time.perf_counter() - started
    experiment = rl_platform.load_experiment(meta.run_dir / "config.yaml")
    tasks = args.tasks or list(experiment.meta.held_out)
    env_config = dict(experiment.env.config)
    agents = env_config["num_agents"]
    print(f"meta-trained in {meta_wall:.0f} s ({meta.iterations} iterations): {meta.run_dir}")

    reference, runs = {}, []
    for task in tasks:
        config = {**env_config, **task_overrides(MeetingPointEnv, task)}
        zero_shot = policy_scores(meta.last_checkpoint, config, EPISODES, EVAL_SEED)
        reference[task] = {"zero_shot": float(zero_shot.mean())}
        for baseline in ("centroid", RANDOM):
            scores = episode_scores("meeting_point", baseline, config, EPISODES, EVAL_SEED)
            reference[task][baseline] = float(scores.mean())
        for seed in args.seeds:
            for start in ("adapted", "scratch"):
                t0 = time.perf_counter()
                result = rl_platform.adapt(
                    meta.run_dir,
                    task,
                    args.iterations,
                    scratch=start == "scratch",
                    seed=seed,
                    output=runs_dir,
                )
                wall = time.perf_counter() - t0
                score = float(
                    policy_scores(result.last_checkpoint, episodes=EPISODES, seed=EVAL_SEED).mean()
                )
                runs.append({"task": task, "seed": seed, "start": start, "score": score,
                             "train_return": result.episode_return_mean, "wall_s": wall,
                             "env_steps": result.env_steps})  # fmt: skip
                print(f"{task:>4} seed {seed} {start:>8}: greedy score {score:8.2f} ({wall:.0f} s)")

    summary = {}
    print(
        f"\nadaptation budget: {args.iterations} iterations; greedy score = mean per-agent return"
    )
    print(f"{'task':>6} {'start':>10} {'score':>17}")
    for task in [*tasks, "all"]:
        for start in ("adapted", "scratch"):
            scores = [
                r["score"] for r in runs if r["start"] == start and task in ("all", r["task"])
            ]
            sampled = [
                r["train_return"] / agents
                for r in runs
                if r["start"] == start and task in ("all", r["task"])
            ]
            mean, std = float(np.mean(scores)), float(np.std(scores, ddof=1))
            summary.setdefault(task, {})[start] = {
                "mean": mean,
                "std": std,
                "n": len(scores),
                "sampled_return_last_iteration": float(np.mean(sampled)),
            }
            print(
                f"{task:>6} {start:>10} {mean:8.2f} +- {std:5.2f}   (sampled, last "
                f"iteration: {np.mean(sampled):.2f})"
            )
        if task != "all":
            ref = reference[task]
            note = "(meta-weights, no adaptation)"
            print(f"{task:>6} {'zero-shot':>10} {ref['zero_shot']:8.2f}   {note}")
            print(f"{task:>6} {'centroid':>10} {ref['centroid']:8.2f}   random {ref['random']:.2f}")
    tests = {}
    for task in [*tasks, "all"]:
        adapted, scratch = (
            [r["score"] for r in runs if r["start"] == start and task in ("all", r["task"])]
            for start in ("adapted", "scratch")
        )
        t, p = welch_t_test(adapted, scratch)
        diff = summary[task]["adapted"]["mean"] - summary[task]["scratch"]["mean"]
        tests[task] = {"difference": diff, "welch_t": t, "p_value": p}
        print(f"{task:>6} adapted - scratch: {diff:+.2f}, Welch t = {t:.2f}, p = {p:.4f}")
    report = {
        "experiment": str(EXPERIMENT.relative_to(ROOT)),
        "overrides": args.overrides,
        "meta_iterations": meta.iterations,
        "meta_wall_s": meta_wall,
        "adaptation_iterations": args.iterations,
        "tasks": tasks,
        "reference": reference,
        "runs": runs,
        "summary": summary,
        "welch": tests,
    }
    path = args.output / ("meta.json" if args.tasks is None else f"meta_{'_'.join(tasks)}.json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
