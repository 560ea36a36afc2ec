"""Each env's baselines vs a random policy: mean per-agent episode return per level.

How to run:  python bench/env_baselines.py [--env ID ...] [--episodes 20] [--discrete]
Prints one table per env and writes bench/results/env_baselines.json.
"""

import argparse
import json
from pathlib import Path

from rl_platform import registry
from rl_platform.evaluation.baselines import baseline_table

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", nargs="*", default=sorted(registry.ENVS))
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--discrete", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    results = {}
    for env_id in args.env:
        config = {"discrete": True} if args.discrete else {}
        table = baseline_table(env_id, config, episodes=args.episodes)
        results[env_id] = table
        policies = list(next(iter(table.values())))
        print(f"\n{env_id} ({args.episodes} episodes per cell, mean per-agent return)")
        print(f"{'level':>8}" + "".join(f"{p:>16}" for p in policies))
        for level, row in table.items():
            print(f"{level:>8}" + "".join(f"{row[p]:>16.3f}" for p in policies))
    args.output.mkdir(parents=True, exist_ok=True)
    name = "env_baselines_discrete.json" if args.discrete else "env_baselines.json"
    (args.output / name).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
