"""Does a trained meta-controller choose strategies better than any fixed strategy? Trading.

How to run:
    python bench/hierarchical.py                    # 1 training seed, 5-10 min on 2 cores
    python bench/hierarchical.py --seeds 0 1 2      # 3 training seeds, 3x as long

Trains ``experiments/trading_hierarchical.yaml`` (PPO meta-controllers choosing each
trader's strategy every 10 steps; episodes drawn at the easy or the hard level) for
``--iterations`` per training seed, then plays, on the same held-out env seeds (common
random numbers: every policy meets the same markets), ``--episodes`` episodes at each
of the two levels with: the learned meta-controller (greedy: the argmax strategy), each
fixed strategy (always the same one) and a uniformly random choice, all through the same
K-step controller (:class:`~rl_platform.advanced.hierarchical.StrategyController`).
Prints the mean per-agent episode return +- its standard error per level and over both
(the training mix), the learned choice's paired difference with the best fixed strategy,
and what it chose at each level; writes bench/results/hierarchical.json.

Results to expect (seed 0): the learned choice scores about 0.39 over both levels, the
best fixed strategy (balanced) 0.24, a random choice 0.11; it trades trends at easy and
turns contrarian at hard (README, "Hierarchical control").
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

import rl_platform
from rl_platform.advanced.hierarchical import StrategyController, strategy_names
from rl_platform.config import load_experiment
from rl_platform.evaluation.policy import TrainedPolicy
from rl_platform.registry import env_config_of, get_env

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "trading_hierarchical.yaml"
EVAL_SEED = 10_000  # held out: training seeds its env runners from the experiment's seed


def play(core, names, every, choose, seed):
    """Per-episode mean per-agent returns (B,) and the choices' counts per strategy."""
    counts = np.zeros(len(names))

    def counted(meta):
        choice = np.asarray(choose(meta))
        counts[:] += np.bincount(choice.ravel(), minlength=len(names))
        return choice

    controller = StrategyController(core, names, every, counted)
    controller.reset()
    returns = core.play_episodes(controller, np.random.default_rng(seed))
    return returns, counts / counts.sum()


def stats(values):
    values = np.asarray(values)
    return {
        "mean": float(values.mean()),
        "stderr": float(values.std(ddof=1) / np.sqrt(len(values))),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=500, help="Per level.")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    experiment = load_experiment(EXPERIMENT)
    env_cls = get_env(experiment.env.id).load()
    names = strategy_names(experiment.hierarchy, env_cls)
    every = experiment.hierarchy.every
    levels = list(experiment.env.config["random_levels"])
    trained_config = env_config_of(experiment)  # the env section plus the reward weights
    base_config = {k: v for k, v in trained_config.items() if k != "random_levels"}

    def core_at(level):
        config = env_cls.config_model.model_validate({**base_config, "task": level})
        return env_cls.core_cls(config, args.episodes)

    rng = np.random.default_rng(EVAL_SEED)
    fixed = {name: (lambda meta, i=i: np.full(meta.shape[:2], i)) for i, name in enumerate(names)}
    policies = {**fixed, "random": lambda meta: rng.integers(len(names), size=meta.shape[:2])}
    trained = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            start = time.perf_counter()
            result = rl_platform.train(
                EXPERIMENT,
                {"seed": seed, "stop.training_iteration": args.iterations},
                output=tmp,
            )
            if result.status != "finished" or result.last_checkpoint is None:
                raise SystemExit(f"training seed {seed} failed: {result.error}")
            meta = TrainedPolicy(result.last_checkpoint)
            policies[f"learned (seed {seed})"] = meta.actions
            trained[seed] = {
                "train_s": round(time.perf_counter() - start, 1),
                "iterations": result.iterations,
                "env_steps": result.env_steps,
                "strategy_share": (result.metrics.get("env_runners") or {}).get(
                    "strategy_share", {}
                ),
            }
        scores = {}
        for policy, choose in policies.items():
            per_level, shares = {}, {}
            for level in levels:
                returns, share = play(core_at(level), names, every, choose, EVAL_SEED)
                per_level[level] = returns
                shares[level] = dict(zip(names, np.round(share, 3).tolist()))
            scores[policy] = {"levels": per_level, "shares": shares}

    def overall(policy):
        return np.concatenate([scores[policy]["levels"][lv] for lv in levels])

    best_fixed = max(names, key=lambda n: overall(n).mean())
    rows = {}
    print(f"\nmean per-agent return +- stderr, {args.episodes} held-out episodes per level")
    header = f"{'policy':<18}" + "".join(f"{lv:>18}" for lv in levels) + f"{'both (mix)':>18}"
    print(header)
    for policy in policies:
        cells = {lv: stats(scores[policy]["levels"][lv]) for lv in levels}
        cells["both"] = stats(overall(policy))
        rows[policy] = {**cells, "shares": scores[policy]["shares"]}
        line = "".join(f"{c['mean']:>11.3f} +-{c['stderr']:.3f}" for c in cells.values())
        print(f"{policy:<18}{line}")
    print(f"\nbest fixed strategy: {best_fixed}")
    for seed in args.seeds:
        name = f"learned (seed {seed})"
        diff = stats(overall(name) - overall(best_fixed))  # paired: same markets
        rows[name]["minus_best_fixed"] = diff
        print(f"{name}: {diff['mean']:+.3f} +- {diff['stderr']:.3f} vs {best_fixed} (paired)")
        for level in levels:
            share = scores[name]["shares"][level]
            print(f"  chose at {level}: " + ", ".join(f"{k} {v:.0%}" for k, v in share.items()))

    out = {
        "experiment": yaml.safe_load(EXPERIMENT.read_text()),
        "iterations": args.iterations,
        "episodes_per_level": args.episodes,
        "eval_seed": EVAL_SEED,
        "best_fixed": best_fixed,
        "training": trained,
        "results": rows,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / "hierarchical.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
