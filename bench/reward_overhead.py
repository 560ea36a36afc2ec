"""What the reward wrapper costs per env step: plain env vs RewardEnv vs difference rewards.

How to run:
    python bench/reward_overhead.py                 # trading, coverage, rendezvous
    python bench/reward_overhead.py --envs coverage --steps 20000

Steps one env copy (the RLlib view) with random actions, as an env runner would, through
the plain env, through :class:`~rl_platform.rewards.RewardEnv` with nothing engineered
(the per-episode reward bookkeeping every run has), and with ``difference: true`` (one
counterfactual step per agent per step). Prints steps/s (median of 5 repeats) and writes
bench/results/reward_overhead.json.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rl_platform.rewards import RewardEnv, make_env

ROOT = Path(__file__).resolve().parents[1]


def steps_per_second(env, steps: int, repeats: int = 5) -> float:
    rates = []
    for repeat in range(repeats):
        env.reset(seed=repeat)
        for space in env.action_spaces.values():
            space.seed(repeat)
        joint = [{a: env.action_spaces[a].sample() for a in env.possible_agents} for _ in range(64)]
        started = time.perf_counter()
        for step in range(steps):
            _, _, terms, truncs, _ = env.step(joint[step % 64])
            if terms["__all__"] or truncs["__all__"]:
                env.reset()
        rates.append(steps / (time.perf_counter() - started))
    return float(np.median(rates))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", nargs="+", default=["trading", "coverage", "rendezvous"])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    report = {}
    for env_id in args.envs:
        variants = {
            "plain": make_env(env_id, {}),
            "wrapped": RewardEnv({"env_id": env_id, "env_config": {}, "rewards": {}}),
            "difference": RewardEnv(
                {"env_id": env_id, "env_config": {}, "rewards": {"difference": True}}
            ),
        }
        rates = {name: steps_per_second(env, args.steps) for name, env in variants.items()}
        overhead_us = 1e6 / rates["wrapped"] - 1e6 / rates["plain"]
        report[env_id] = {**rates, "wrapper_overhead_us_per_step": overhead_us}
        print(
            f"{env_id:>12}: plain {rates['plain']:>8,.0f}/s  wrapped {rates['wrapped']:>8,.0f}/s"
            f" (+{overhead_us:.1f} us a step)  difference {rates['difference']:>8,.0f}/s"
        )
    path = args.output / "reward_overhead.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
