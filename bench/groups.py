"""MAPPO with groups on mpe2's speaker-listener: greedy return against random play.

Trains experiments/speaker_listener_groups.yaml (``algorithm.groups``: a speaker module
and a listener module; their spaces differ, so the stock runner samples) for a fixed
budget of env steps per seed, and measures, every few iterations and at the end, the
greedy policy's mean episode return (per agent, the env's shared reward; 100 episodes
of 25 steps, fixed seeds) next to uniformly random play on the same episodes.

Run:  python bench/groups.py [--seeds 3] [--env-steps 200000]
Writes bench/results/groups.json and groups.png. About 4 minutes per seed on 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
from provenance import commit

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "speaker_listener_groups.yaml"
RESULTS = ROOT / "bench" / "results" / "groups.json"
FIGURE = RESULTS.with_suffix(".png")
EPISODES = 100


def play(algo, episodes: int, greedy: bool, seed: int = 10_000, randomized: tuple = ()) -> float:
    """Mean episode return (per agent) of the trained modules (greedy) or random play.

    Agents in `randomized` act uniformly at random even when `greedy`.
    """
    import torch
    from ray.rllib.core.columns import Columns

    from rl_platform.sampling import GlobalStateEnv

    env = GlobalStateEnv(algo.config.env_config)
    mapping = algo.config.policy_mapping_fn
    rng = np.random.default_rng(seed)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            actions = {}
            for agent, o in obs.items():
                if not greedy or agent in randomized:
                    actions[agent] = int(rng.integers(env.action_spaces[agent].n))
                    continue
                module = algo.get_module(mapping(agent, None))
                batch = {Columns.OBS: {k: torch.as_tensor(v)[None] for k, v in o.items()}}
                with torch.no_grad():
                    logits = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
                actions[agent] = int(logits.argmax(-1)[0])
            obs, rewards, terms, truncs, _ = env.step(actions)
            total += float(np.mean(list(rewards.values())))
            done = terms["__all__"] or truncs["__all__"]
        returns.append(total)
    return float(np.mean(returns))


def run(seed: int, env_steps: int, eval_every: int) -> dict:
    """Train one seed; its greedy-return curve and final greedy and random returns."""
    from rl_platform.builder import build_algorithm_config
    from rl_platform.config import load_experiment

    experiment = load_experiment(EXPERIMENT, {"seed": seed, "stop.env_steps": env_steps})
    algo = build_algorithm_config(experiment).build_algo()
    curve, steps, iteration, t0 = [], 0, 0, time.time()
    try:
        curve.append({"env_steps": 0, "greedy_return": play(algo, EPISODES, True)})
        while steps < env_steps:
            result = algo.train()
            iteration += 1
            steps = int(result["num_env_steps_sampled_lifetime"])
            if iteration % eval_every == 0 or steps >= env_steps:
                curve.append({"env_steps": steps, "greedy_return": play(algo, EPISODES, True)})
                print(f"seed {seed} {steps:7d} steps: greedy {curve[-1]['greedy_return']:.2f}")
        random_return = play(algo, EPISODES, False)
        # the listener's greedy policy with the speaker's words drawn at random: as good
        # as the trained pair means the listener does not use what the speaker says
        speaker_random = play(algo, EPISODES, True, randomized=("speaker_0",))
        modules = sorted(algo.learner_group.get_weights())
    finally:
        algo.stop()
    return {
        "seed": seed,
        "modules": modules,
        "env_steps": steps,
        "iterations": iteration,
        "wall_time_s": round(time.time() - t0, 1),
        "greedy_return": curve[-1]["greedy_return"],
        "random_return": random_return,
        "speaker_randomized_return": speaker_random,
        "curve": curve,
    }


def figure(summary: dict) -> None:
    """Greedy return over env steps per seed, random play as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for run_ in summary["runs"]:
        xs = [p["env_steps"] for p in run_["curve"]]
        ys = [p["greedy_return"] for p in run_["curve"]]
        ax.plot(xs, ys, marker="o", ms=3, label=f"MAPPO, groups (seed {run_['seed']})")
    randoms = [r["random_return"] for r in summary["runs"]]
    ax.axhline(np.mean(randoms), color="grey", ls="--", label="random play")
    ablated = [r["speaker_randomized_return"] for r in summary["runs"]]
    ax.axhline(np.mean(ablated), color="grey", ls=":", label="trained listener, random speaker")
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"mean episode return ({EPISODES} episodes)")
    ax.set_title("speaker-listener, one module per group")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--env-steps", type=int, default=200_000)
    parser.add_argument("--eval-every", type=int, default=10, help="iterations")
    args = parser.parse_args()

    import torch

    from rl_platform.ray_session import init_ray, shutdown_ray

    torch.set_num_threads(1)
    init_ray(num_cpus=2)
    logging.getLogger("ray.rllib").setLevel(logging.ERROR)
    start = time.time()
    try:
        runs = [run(seed, args.env_steps, args.eval_every) for seed in range(args.seeds)]
    finally:
        shutdown_ray()
    greedy = [r["greedy_return"] for r in runs]
    randoms = [r["random_return"] for r in runs]
    ablated = [r["speaker_randomized_return"] for r in runs]
    summary = {
        "experiment": "experiments/speaker_listener_groups.yaml",
        "env": "pettingzoo:mpe2.simple_speaker_listener_v4:parallel_env",
        "groups": {"speaker": ["speaker_0"], "listener": ["listener_*"]},
        "seeds": args.seeds,
        "env_steps_per_seed": args.env_steps,
        "eval_episodes": EPISODES,
        "greedy_return_mean": float(np.mean(greedy)),
        "random_return_mean": float(np.mean(randoms)),
        "speaker_randomized_return_mean": float(np.mean(ablated)),
        "beats_random_in": sum(g > r for g, r in zip(greedy, randoms)),
        "wall_time_s": round(time.time() - start, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "note": "2 cores shared with other work (other test and bench runs) during the run",
        },
        "commit": commit(),
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    figure(summary)
    print(
        f"greedy {summary['greedy_return_mean']:.2f} vs random "
        f"{summary['random_return_mean']:.2f} over {args.seeds} seeds; wrote {RESULTS}"
    )


if __name__ == "__main__":
    main()
