"""PPO from RLlib with independent actor-critics (IPPO when parameters are per agent).

Each agent acts and is criticised on its own observation; with ``shared_policy: true``
all agents share one network (parameter sharing, the usual default for homogeneous
agents). Centralized critics (MAPPO) are a separate algorithm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rl_platform import registry
from rl_platform.config.algorithms import PPOParams as Hyperparams

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    from rl_platform.algorithms.common import BuildContext


class PPO(registry.Algorithm):
    """``algorithm.id: ppo``: RLlib's PPO with its default actor-critic modules."""

    Hyperparams: ClassVar[type[Hyperparams]] = Hyperparams
    batched_sampling: ClassVar[bool] = True

    @classmethod
    def new_config(cls) -> AlgorithmConfig:
        """A new RLlib ``PPOConfig``."""
        from ray.rllib.algorithms.ppo import PPOConfig

        return PPOConfig()

    @classmethod
    def configure(
        cls, config: AlgorithmConfig, hyperparams: Hyperparams, context: BuildContext
    ) -> AlgorithmConfig:
        """PPO's training settings: the hyperparameters as they are."""
        return config.training(**hyperparams.model_dump())
