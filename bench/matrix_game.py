"""IQL vs VDN vs QMIX on the QMIX paper's two-step matrix game: who finds the optimum 8?

Rashid et al. 2018 (section 6.1, Table 1): trained on uniformly exploring data, QMIX's
greedy joint policy goes to state 2B and coordinates on (1, 1) for a return of 8, while
VDN (and independent learners) settle on the safe 7 of state 2A, because a sum of
per-agent values cannot represent 2B's payoff matrix [[0, 1], [1, 8]] well enough.

Each algorithm trains with its platform builder (``rl_platform.algorithms``), 10 seeds,
a fixed small budget, epsilon 1 throughout (uniform exploration, as in the paper),
gamma 0.99, mixing and hypernetwork embeddings of 8. Then the greedy joint policy plays
the game once (it is deterministic). Runs in the driver process (no remote env runners,
a local learner), one torch thread.

With ``--recurrent`` every agent is the paper's GRU agent (``recurrent: true``, hidden
state carried through the episode, trained on replayed 2-step sequences, one per episode).

Run:  python bench/matrix_game.py [--seeds 10] [--iterations 60] [--recurrent]
Writes bench/results/matrix_game.json (matrix_game_recurrent.json with --recurrent).
Expect QMIX to find 8 in >= 8 of 10 seeds, VDN and IQL in (almost) none; about 2-4
minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "matrix_game.json"
RECURRENT_RESULTS = RESULTS.with_name("matrix_game_recurrent.json")
ALGORITHMS = ("iql", "vdn", "qmix")
OPTIMUM = 8.0


def experiment(algo: str, seed: int, iterations: int, recurrent: bool = False) -> dict:
    """The experiment of one run (the platform's YAML shape, as a dict)."""
    spec = {
        "name": f"two_step_{algo}_{seed}",
        "seed": seed,
        "env": {"id": "two_step_game", "config": {}},
        "algorithm": {
            "id": algo,
            "shared_policy": True,
            "network": {"hidden_sizes": [64], "activation": "relu"},
            "hyperparams": {
                "lr": 2e-3,
                "gamma": 0.99,
                "epsilon": 1.0,
                "train_batch_size_per_learner": 64,
                "num_steps_sampled_before_learning_starts": 256,
                "training_intensity": 8.0,
                "target_network_update_freq": 200,
                "mixing_embed_dim": 8,
                "hypernet_embed_dim": 8,
            },
        },
        "resources": {
            "num_env_runners": 0,
            "num_envs_per_env_runner": 16,
            "rollout_fragment_length": 8,
        },
        "stop": {"training_iteration": iterations},
        "evaluation": {"every": 0},
    }
    if recurrent:
        # A sequence is a whole 2-step episode; a batch is 64 episodes.
        spec["algorithm"]["hyperparams"].update({"recurrent": True, "max_seq_len": 2})
    return spec


def greedy_return(algo) -> tuple[float, list[list[int]]]:
    """Return of one greedy episode (per agent; the game pays all agents alike)."""
    import torch
    from ray.rllib.core.columns import Columns

    from rl_platform.sampling import GlobalStateEnv

    env = GlobalStateEnv(algo.config.env_config)
    mapping = algo.config.policy_mapping_fn
    obs, _ = env.reset(seed=0)
    total, done, joint_actions = 0.0, False, []
    states: dict = {}  # recurrent modules: each agent's STATE_OUT, carried through the episode
    while not done:
        actions = {}
        for agent, o in obs.items():
            module = algo.get_module(mapping(agent, None))
            batch = {Columns.OBS: {"obs": torch.as_tensor(o["obs"])[None]}}
            if module.is_stateful():
                initial = {k: v[None] for k, v in module.get_initial_state().items()}
                batch[Columns.STATE_IN] = states.get(agent, initial)
            with torch.no_grad():
                out = module.forward_inference(batch)
            q = out[Columns.ACTION_DIST_INPUTS]
            states[agent] = out.get(Columns.STATE_OUT)
            actions[agent] = int(q.argmax(-1)[0])
        joint_actions.append([actions[a] for a in env.possible_agents])
        obs, rewards, terms, truncs, _ = env.step(actions)
        total += float(np.mean(list(rewards.values())))
        done = terms["__all__"] or truncs["__all__"]
    return total, joint_actions


def run(algo: str, seed: int, iterations: int, recurrent: bool = False) -> dict:
    """Train one seed and evaluate its greedy joint return."""
    from rl_platform.builder import build_algorithm_config
    from rl_platform.config import load_experiment

    spec = experiment(algo, seed, iterations, recurrent)
    config = build_algorithm_config(load_experiment(spec))
    trainer = config.build_algo()
    try:
        for _ in range(iterations):
            result = trainer.train()
        ret, joint_actions = greedy_return(trainer)
        env_steps = int(result.get("num_env_steps_sampled_lifetime", 0))
    finally:
        trainer.stop()
    return {
        "seed": seed,
        "greedy_return": ret,
        "joint_actions": joint_actions,
        "env_steps": env_steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    parser.add_argument("--recurrent", action="store_true", help="GRU agents (recurrent: true)")
    args = parser.parse_args()

    import torch

    from rl_platform.ray_session import init_ray, shutdown_ray

    torch.set_num_threads(1)  # tiny networks: extra threads only contend on 2 cores
    init_ray(num_cpus=2)  # a private Ray on 127.0.0.1 (rl_platform.ray_session)
    logging.getLogger("ray.rllib").setLevel(logging.ERROR)
    summary: dict = {
        "optimum": OPTIMUM,
        "iterations": args.iterations,
        "recurrent": args.recurrent,
        "algorithms": {},
    }
    start = time.time()
    try:
        for algo in args.algorithms:
            t0 = time.time()
            runs = [run(algo, seed, args.iterations, args.recurrent) for seed in range(args.seeds)]
            found = sum(r["greedy_return"] >= OPTIMUM - 1e-6 for r in runs)
            summary["algorithms"][algo] = {
                "optimal_seeds": found,
                "seeds": args.seeds,
                "greedy_returns": [r["greedy_return"] for r in runs],
                "env_steps_per_run": runs[0]["env_steps"],
                "wall_time_s": round(time.time() - t0, 1),
                "runs": runs,
            }
            returns = " ".join(f"{r['greedy_return']:g}" for r in runs)
            print(
                f"{algo:5s} optimum 8 found in {found:2d}/{args.seeds} seeds  "
                f"greedy returns: {returns}  ({time.time() - t0:.0f} s, "
                f"{runs[0]['env_steps']} env steps per run)",
                flush=True,
            )
    finally:
        shutdown_ray()
    summary["wall_time_s"] = round(time.time() - start, 1)
    path = RECURRENT_RESULTS if args.recurrent else RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"total {summary['wall_time_s']} s; wrote {path}")


if __name__ == "__main__":
    main()
