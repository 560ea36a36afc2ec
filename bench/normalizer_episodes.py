"""The quickstart's normalizer on 10 episodes and on 100 (training said 1.24, rlp evaluate 1.01).

Plays random play and every trading baseline at the quickstart's level (easy, its env
config and reward weights) on the held-out episodes of evaluation seed 0: 10 episodes
with the jobs the evaluation during training used before (``rollout.seeded_job``, its
``evaluation.episodes``), 100 with the suite's jobs (``suite.paired_job``, what both use
now). Writes ``bench/results/normalizer_episodes.json``; no Ray, a few seconds::

    python bench/normalizer_episodes.py
"""

from __future__ import annotations

import json
import os
import platform
import sys

from provenance import ROOT, commit

RESULTS = ROOT / "bench" / "results" / "normalizer_episodes.json"


def main() -> None:
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
    summary = {
        "level": level,
        "seed": 0,
        "normalizers": out,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "commit": commit(),
    }
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
