"""rl_platform: multi-agent reinforcement learning on Ray.

The library API mirrors the ``rlp`` commands::

    import rl_platform
    result = rl_platform.train("experiments/quickstart.yaml", ["stop.training_iteration=5"])
    print(result.run_dir, result.best_checkpoint)
    sweep = rl_platform.tune("experiments/sweeps/rendezvous_ppo_sweep.yaml", num_samples=4)
    print(sweep.best_yaml, sweep.best.params)
    report = rl_platform.evaluate(result.run_dir)
    print(report.report_dir, report.result["dimensions"]["policy"])
    adapted = rl_platform.adapt(meta_run_dir, task="n", iterations=2)  # after a meta: run
    group = rl_platform.train_seeds("experiments/two_step_qmix.yaml", "0-4")
    print(group.group_dir, group.aggregate["iqm"])
"""

from __future__ import annotations

from typing import Any

from rl_platform.version import __version__

__all__ = ["adapt", "evaluate", "load_experiment", "train", "train_seeds", "tune", "__version__"]


def __getattr__(name: str) -> Any:
    # Keep `import rl_platform` free of Ray and torch; load them on first use.
    if name == "train":
        from rl_platform.training import train

        return train
    if name == "train_seeds":
        from rl_platform.seeds import train_seeds

        return train_seeds
    if name == "tune":
        from rl_platform.tuning import tune

        return tune
    if name == "evaluate":
        from rl_platform.evaluation.suite import evaluate

        return evaluate
    if name == "adapt":
        from rl_platform.adaptation import adapt

        return adapt
    if name == "load_experiment":
        from rl_platform.config import load_experiment

        return load_experiment
    raise AttributeError(f"module 'rl_platform' has no attribute {name!r}")
