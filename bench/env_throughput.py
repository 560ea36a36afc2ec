"""Env speed: the single-copy RLlib view, the batched core, and RLlib's stock sampling.

How to run:  python bench/env_throughput.py [--env ID ...] [--seconds 2]
Prints a table and writes bench/results/env_throughput.json. Targets (one core,
pre-sampled random actions): >= 20,000 env steps/s for each view at its default size and
>= 1,000,000 agent steps/s for each core at B=1024. The RLlib column is PPO's stock
MultiAgentEnvRunner sampling in-process (no Ray cluster), for comparison.
"""

import argparse
import json
import logging
import time
from pathlib import Path

from rl_platform import registry
from rl_platform.envs.checks import core_agent_steps_per_second, view_steps_per_second

ROOT = Path(__file__).resolve().parents[1]


def rllib_steps_per_second(env_id: str, envs_per_runner: int, steps: int = 4000) -> float:
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

    from rl_platform.builder import build_algorithm_config
    from rl_platform.config import load_experiment

    experiment = load_experiment(
        {
            "name": "bench",
            "env": {"id": env_id},
            "algorithm": {"id": "ppo"},
            "resources": {"num_env_runners": 0, "num_envs_per_env_runner": envs_per_runner},
        }
    )
    runner = MultiAgentEnvRunner(config=build_algorithm_config(experiment))
    runner.sample(num_timesteps=500)  # warm up
    started = time.perf_counter()
    episodes = runner.sample(num_timesteps=steps)
    elapsed = time.perf_counter() - started
    runner.stop()
    return sum(e.env_steps() for e in episodes) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", nargs="*", default=sorted(registry.ENVS))
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    rows = []
    for env_id in args.env:
        row = {
            "env": env_id,
            "view_env_steps_per_s": view_steps_per_second(env_id, seconds=args.seconds),
            "core_agent_steps_per_s_B1024": core_agent_steps_per_second(
                env_id, batch_size=1024, seconds=args.seconds
            ),
            "rllib_env_steps_per_s_1env": rllib_steps_per_second(env_id, 1),
            "rllib_env_steps_per_s_8envs": rllib_steps_per_second(env_id, 8),
        }
        rows.append(row)
        print(
            f"{env_id:>22}  view {row['view_env_steps_per_s']:>9,.0f} env steps/s   "
            f"core(B=1024) {row['core_agent_steps_per_s_B1024']:>12,.0f} agent steps/s   "
            f"rllib {row['rllib_env_steps_per_s_1env']:>6,.0f} (1 env) "
            f"{row['rllib_env_steps_per_s_8envs']:>6,.0f} (8 envs) env steps/s",
            flush=True,
        )
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "env_throughput.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
