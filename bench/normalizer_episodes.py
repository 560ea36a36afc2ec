"""The quickstart's normalizer on 10 episodes and on 100 (training said 1.24, rlp evaluate 1.01).

Plays random play and every trading baseline at the quickstart's level (easy, its env
config and reward weights) on the held-out episodes of evaluation seed 0: 10 episodes
with the jobs the evaluation during training used before (``rollout.seeded_job``, its
``evaluation.episodes``), 100 with the suite's jobs (``suite.paired_job``, what both use
now). With ``--run RUN_DIR`` (a quickstart run), also its last training-time evaluation
next to the suite's figures for the run's best checkpoint on 10 and on 100 episodes.
Writes ``bench/results/normalizer_episodes.json``; no Ray, seconds::

    python bench/normalizer_episodes.py --run runs/quickstart/<stamp>
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from provenance import ROOT, commit

RESULTS = ROOT / "bench" / "results" / "normalizer_episodes.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a quickstart run directory")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from rl_platform import registry
    from rl_platform.config import load_experiment
    from rl_platform.evaluation import scoring
    from rl_platform.evaluation.baselines import RANDOM
    from rl_platform.evaluation.rollout import seeded_job
    from rl_platform.evaluation.suite import JobContext, paired_job, run_job

    experiment = load_experiment(ROOT / "experiments" / "quickstart.yaml")
    env_config = registry.env_config_of(experiment)
    level = env_config["task"]
    baselines = tuple(registry.get_env("trading").load().core_cls.baselines)
    context = JobContext("trading", env_config, checkpoint="")
    out = {}
    for label, make, episodes in (
        ("before: training-time jobs, 10 episodes", seeded_job, 10),
        ("now: the suite's jobs, 100 episodes", paired_job, 100),
    ):
        row = {
            name: {
                "mean": float(
                    run_job(context, make(name, "clean", level, episodes, 0)).returns.mean()
                )
            }
            for name in (RANDOM, *baselines)
        }
        low, high = scoring.gap(row, baselines)
        best = max(baselines, key=lambda name: row[name]["mean"])
        out[label] = {
            "episodes": episodes,
            "means": {name: entry["mean"] for name, entry in row.items()},
            "best_baseline": best,
            "gap": high - low,
        }
        print(f"{label}: best {best}, gap {high - low:.3f}, means {out[label]['means']}")
    if args.run is not None:
        out["run"] = run_check(args.run)
    summary = {
        "level": level,
        "seed": 0,
        "normalizers": out,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "commit": commit(),
    }
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {RESULTS}")


def run_check(run: Path) -> dict:
    """The run's last training-time evaluation and the suite's figures on its checkpoint."""
    from rl_platform.evaluation import scoring
    from rl_platform.evaluation.baselines import RANDOM
    from rl_platform.evaluation.rollout import POLICY
    from rl_platform.evaluation.statistics import t_interval
    from rl_platform.evaluation.suite import JobContext, SuiteSettings, paired_job, run_job
    from rl_platform.evaluation.target import resolve_target

    target = resolve_target(run)
    context = JobContext(target.env_id, target.env_config, str(target.checkpoint))
    lines = (run / "trial" / "result.json").read_text().splitlines()
    results = [json.loads(line) for line in lines if line.strip()]
    first, last = results[0]["evaluation"], results[-1]["evaluation"]
    reference = SuiteSettings().episodes
    row = {
        name: {
            "mean": float(
                run_job(
                    context, paired_job(name, "clean", target.level, reference, 0)
                ).returns.mean()
            )
        }
        for name in (RANDOM, *target.baselines)
    }
    suite = {}
    for episodes in (10, reference):
        played = run_job(context, paired_job(POLICY, "clean", target.level, episodes, 0))
        interval = t_interval(played.returns)
        scored = {**row, POLICY: {"mean": interval.point}}
        scoring.normalize_row(scored, target.baselines)
        suite[str(episodes)] = {
            "score": interval.to_json(),
            "normalized": scored[POLICY]["normalized"],
        }
    return {
        "checkpoint": target.checkpoint.name,
        "training_time_first": first,
        "training_time": last,
        "suite": suite,
    }


if __name__ == "__main__":
    main()
