"""Learning curves: each algorithm over several seeds vs the env's baselines and random.

How to run:
    python bench/learning.py --env rendezvous --algos mappo ippo ppo --seeds 3 --env-steps 40000
    python bench/learning.py --env resource_allocation --set env.config.task=hard
    python bench/learning.py --env supply_chain --algos qmix mappo --set env.config.discrete=true \
        --set qmix:algorithm.hyperparams.training_intensity=4

For every (algorithm, seed) it trains with `rl_platform.train` until the env-step
budget, then scores the best checkpoint's greedy policy (weights-only export) over 20
episodes on the batched core, next to random and every baseline. Writes
bench/results/learning_<env>.json and learning_<env>.png (mean and min-max spread of the
per-agent training return across seeds; baselines as horizontal lines).
Later algorithm issues reuse this harness: any registered algorithm id works.
"""

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from rl_platform import registry
from rl_platform.algorithms.replay import NUM_LEARNER_UPDATES_LIFETIME
from rl_platform.config import load_experiment
from rl_platform.evaluation.baselines import RANDOM, episode_scores
from rl_platform.evaluation.policy import policy_scores
from rl_platform.registry import env_config_of
from rl_platform.training import train

ROOT = Path(__file__).resolve().parents[1]


# Bench defaults per algorithm family (the algorithms' own defaults suit longer runs).
BENCH_HYPERPARAMS = {
    "ppo": {"train_batch_size_per_learner": 1000, "minibatch_size": 500},
    "mappo": {"train_batch_size_per_learner": 1000, "minibatch_size": 500},
    "ippo": {"train_batch_size_per_learner": 1000, "minibatch_size": 500},
}


def experiment_for(env_id, algo, seed, env_steps, overrides):
    """The bench's experiment; an override ``ALGO:key=value`` applies to ALGO only."""
    mine = []
    for item in overrides:
        prefix, sep, rest = item.partition(":")
        if sep and "=" not in prefix and prefix in registry.ALGORITHMS:
            if prefix == algo:
                mine.append(rest)
        else:
            mine.append(item)
    raw = {
        "name": f"learning_{env_id}_{algo}".replace(":", "_").replace(".", "_"),
        "seed": seed,
        "env": {"id": env_id},
        "algorithm": {"id": algo, "hyperparams": dict(BENCH_HYPERPARAMS.get(algo, {}))},
        "resources": {"num_env_runners": 1, "num_envs_per_env_runner": 4},
        "stop": {"env_steps": env_steps},
        "checkpoint": {"every": 0, "keep": 1},
    }
    return load_experiment(raw, mine)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="rendezvous")
    parser.add_argument("--algos", nargs="+", default=["mappo", "ippo", "ppo"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--env-steps", type=int, default=40_000)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        help="override key.path=value, or ALGO:key.path=value for one algorithm",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    args.output.mkdir(parents=True, exist_ok=True)

    env_cls = registry.get_env(args.env).load()
    runs, evaluations, speeds = {}, {}, {}
    for algo in args.algos:
        for seed in range(args.seeds):
            experiment = experiment_for(args.env, algo, seed, args.env_steps, args.set)
            n_agents = len(env_cls(env_config_of(experiment)).possible_agents)
            rows = []
            result = train(experiment, output=args.output / "runs", progress=rows.append)
            curve = [(r.env_steps, r.episode_return_mean / n_agents) for r in rows]
            runs.setdefault(algo, []).append(curve)
            score = policy_scores(result.best_checkpoint, episodes=args.episodes, seed=1000)
            evaluations.setdefault(algo, []).append(float(score.mean()))
            speed = run_speed(result.run_dir)
            speeds.setdefault(algo, []).append(speed)
            updates = speed.get("learner_updates_per_s")
            print(
                f"{algo:>8} seed {seed}: final train return/agent {curve[-1][1]:8.3f}, "
                f"greedy eval {score.mean():8.3f}  ({result.wall_time_s:.0f} s, "
                f"{speed['env_steps_per_s']:.0f} env steps/s"
                + (f", {updates:.0f} learner updates/s)" if updates else ")"),
                flush=True,
            )

    env_config = experiment.env.config
    baselines = {
        name: float(episode_scores(args.env, name, env_config, args.episodes, seed=1000).mean())
        for name in (RANDOM, *getattr(env_cls, "baselines", ()))
    }
    print("\nper-agent episode return (greedy evaluation, mean over seeds):")
    for algo, scores in evaluations.items():
        print(f"{algo:>16}  {np.mean(scores):8.3f} ± {np.std(scores):.3f}")
    for name, score in baselines.items():
        print(f"{name:>16}  {score:8.3f}")

    stem = f"learning_{args.env}".replace(":", "_")
    report = {
        "env": args.env, "env_config": env_config, "env_steps": args.env_steps,
        "seeds": args.seeds, "overrides": args.set, "curves": runs,
        "greedy_eval": evaluations, "baselines": baselines, "speed": speeds,
    }  # fmt: skip
    (args.output / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(runs, baselines, args.output / f"{stem}.png", title=f"{args.env} ({args.seeds} seeds)")
    print(f"\nwrote {args.output / stem}.json and .png")


def run_speed(run_dir: Path) -> dict[str, float]:
    """Env steps/s and (off-policy algorithms) learner updates/s over a run's training time."""
    lines = (run_dir / "trial" / "result.json").read_text().splitlines()
    last = json.loads(lines[-1])
    seconds = last["time_total_s"]
    speed = {"env_steps_per_s": last["num_env_steps_sampled_lifetime"] / seconds}
    if NUM_LEARNER_UPDATES_LIFETIME in last:
        speed["learner_updates_per_s"] = last[NUM_LEARNER_UPDATES_LIFETIME] / seconds
    return speed


def plot(runs, baselines, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for algo, curves in runs.items():
        grid = np.linspace(0, min(c[-1][0] for c in curves), 50)
        values = np.array([np.interp(grid, *zip(*c, strict=True)) for c in curves])
        ax.plot(grid, values.mean(0), label=algo)
        ax.fill_between(grid, values.min(0), values.max(0), alpha=0.2)
    styles = ["--", ":", "-.", (0, (5, 1, 1, 1, 1, 1))]
    for i, (name, score) in enumerate(baselines.items()):
        ax.axhline(
            score,
            ls=styles[i % len(styles)],
            lw=1.2,
            color="grey" if name == RANDOM else f"C{i + len(runs) + 1}",
            label=f"{name} (baseline)",
        )
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return per agent")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
