"""PPO from RLlib with independent actor-critics (IPPO when parameters are per agent).

Each agent acts and is criticised on its own observation; with ``shared_policy: true``
all agents share one network (parameter sharing, the usual default for homogeneous
agents). Centralized critics (MAPPO) are a separate algorithm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rl_platform.algorithms.common import apply_experiment
from rl_platform.config.algorithms import PPOParams as Hyperparams

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    from rl_platform.config import ExperimentConfig


def build(experiment: ExperimentConfig, env_cls: type) -> AlgorithmConfig:
    """The RLlib ``PPOConfig`` for an experiment."""
    from ray.rllib.algorithms.ppo import PPOConfig

    hp = Hyperparams.model_validate(experiment.algorithm.hyperparams)
    config = apply_experiment(PPOConfig(), experiment, env_cls, batched_sampling=True)
    config = config.training(**hp.model_dump())
    if experiment.curiosity is not None:
        from rl_platform.advanced.curiosity import with_curiosity

        config = with_curiosity(config, experiment, env_cls)
    return config
