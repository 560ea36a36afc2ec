"""Tictactoe by self-play with action masks: no illegal move, win rate against random play.

How to run:  python bench/classic.py [--iterations 60] [--every 5] [--games 200] [--quick]

Trains experiments/tictactoe_ppo.yaml (PettingZoo classic tictactoe_v3, a turn-based AEC
env; PPO with one policy for both players, logits masked to the legal moves) in this
process on a private local Ray. Training counts the masked moves the env saw (its
``illegal`` infos, summed over every sampled step); every ``--every`` iterations the
current policy plays ``--games`` greedy games against a player drawing uniformly among
the legal moves, seats alternating (``rl_platform.evaluation.versus``), and so does a
random player (the reference). Writes bench/results/classic.json and classic.png (win,
draw and loss rates against env steps).

Results to expect on the 2-core development machine (shared with other work): see the
JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from provenance import commit

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "tictactoe_ppo.yaml"
EVAL_SEED = 1000  # held-out games: training resets are seeded from the experiment's seed


def count_illegal_moves(*, episode: Any, metrics_logger: Any, **_: Any) -> None:
    """``on_episode_step``: add the masked moves of the step to a lifetime sum."""
    from rl_platform.envs.turn_based import illegal_moves_of_step

    metrics_logger.log_value("illegal_moves", illegal_moves_of_step(episode), reduce="lifetime_sum")


def versus(algo: Any, config: Any, env: Any, games: int) -> dict[str, Any]:
    """The current policy's games against random play (greedy, seats alternating)."""
    from rl_platform.evaluation.versus import TurnPlayer, play_versus_random

    mapping = {agent: config.policy_mapping_fn(agent, None) for agent in env.possible_agents}
    modules = {mid: algo.get_module(mid) for mid in set(mapping.values())}
    record = play_versus_random(env, TurnPlayer.from_modules(modules, mapping), games, EVAL_SEED)
    record.pop("returns")
    return record


def plot(results: dict[str, Any], out: Path) -> None:
    """Win, draw and loss rates against env steps, random play's win rate as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = results["curve"]
    steps = [row["env_steps"] for row in curve]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for outcome, color in (("win", "tab:green"), ("draw", "tab:gray"), ("loss", "tab:red")):
        ax.plot(steps, [row["policy"][outcome] for row in curve], "o-", color=color, label=outcome)
    ax.axhline(results["random"]["win"], color="tab:green", ls=":", label="random player's win")
    ax.set_xlabel("env steps (moves) of self-play")
    ax.set_ylabel(f"share of {results['games']} games vs random")
    ax.set_ylim(0, 1)
    ax.set_title(
        f"tictactoe, PPO self-play with masks: {results['illegal_moves_in_training']} "
        "illegal moves in training"
    )
    ax.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--every", type=int, default=5, help="Iterations between evaluations.")
    parser.add_argument("--games", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="3 iterations, 20 games (smoke).")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.every, args.games = 3, 1, 20
    logging.getLogger("ray").setLevel(logging.ERROR)

    import torch

    from rl_platform.builder import build_algorithm_config
    from rl_platform.config import load_experiment
    from rl_platform.envs.pettingzoo import PettingZooEnv
    from rl_platform.evaluation.versus import play_versus_random
    from rl_platform.ray_session import init_ray, shutdown_ray

    torch.set_num_threads(1)
    checkout = commit()  # before training: what was measured
    experiment = load_experiment(EXPERIMENT, {"stop.training_iteration": args.iterations})
    env = PettingZooEnv({"source": experiment.env.id})
    random_row = play_versus_random(env, None, args.games, EVAL_SEED)
    random_row.pop("returns")
    config = build_algorithm_config(experiment).callbacks(on_episode_step=count_illegal_moves)
    init_ray(num_cpus=2)  # a private Ray on 127.0.0.1 (rl_platform.ray_session)
    curve: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        algo = config.build_algo()
        for iteration in range(1, args.iterations + 1):
            result = algo.train()
            if iteration % args.every and iteration != args.iterations:
                continue
            runners = result["env_runners"]
            row = {
                "iteration": iteration,
                "env_steps": int(result["num_env_steps_sampled_lifetime"]),
                "wall_s": time.perf_counter() - started,
                "illegal_moves": int(runners["illegal_moves"]),  # KeyError: not counted
                "policy": versus(algo, config, env, args.games),
            }
            curve.append(row)
            policy = row["policy"]
            print(
                f"iter {iteration:3d}  {row['env_steps']:7d} steps  win {policy['win']:.2f}  "
                f"draw {policy['draw']:.2f}  loss {policy['loss']:.2f}  illegal in training "
                f"{row['illegal_moves']}  ({row['wall_s']:.0f} s)",
                flush=True,
            )
        algo.stop()
    finally:
        shutdown_ray()
    final = curve[-1]
    results = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "note": "the 2-core machine was shared with other work during the run",
        "commit": checkout,
        "experiment": str(EXPERIMENT.relative_to(ROOT)),
        "env": experiment.env.id,
        "algorithm": {"id": experiment.algorithm.id, "shared_policy": True},
        "iterations": args.iterations,
        "env_steps": final["env_steps"],
        "wall_s": final["wall_s"],
        "games": args.games,
        "eval_seed": EVAL_SEED,
        "illegal_moves_in_training": final["illegal_moves"],
        "illegal_moves_in_evaluation": sum(row["policy"]["illegal_moves"] for row in curve),
        "final": final["policy"],
        "random": random_row,
        "curve": curve,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    name = "classic_quick" if args.quick else "classic"
    (args.output / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.output / f"{name}.png")
    print(
        f"final: win {final['policy']['win']:.3f}, draw {final['policy']['draw']:.3f}, loss "
        f"{final['policy']['loss']:.3f} over {args.games} games (random player: win "
        f"{random_row['win']:.3f}); illegal moves: {results['illegal_moves_in_training']} in "
        f"training, {results['illegal_moves_in_evaluation']} in evaluation"
    )
    print(f"wrote {args.output / name}.json and .png")


if __name__ == "__main__":
    main()
