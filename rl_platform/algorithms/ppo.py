"""PPO from RLlib with independent actor-critics (IPPO when parameters are per agent).

Each agent acts and is criticised on its own observation; with ``shared_policy: true``
all agents share one network (parameter sharing, the usual default for homogeneous
agents). Centralized critics (MAPPO) are a separate algorithm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import ConfigDict, Field, PositiveFloat, PositiveInt

from rl_platform import registry
from rl_platform.yaml_model import YamlModel

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    from rl_platform.algorithms.common import BuildContext


class Hyperparams(YamlModel):
    """PPO hyperparameters (RLlib's names; defaults suit small multi-agent tasks)."""

    model_config = ConfigDict(extra="forbid")

    lr: PositiveFloat = 3e-4
    gamma: float = Field(default=0.99, gt=0, le=1)
    lambda_: float = Field(default=0.95, ge=0, le=1, description="GAE lambda.")
    clip_param: PositiveFloat = 0.2
    vf_clip_param: PositiveFloat = Field(
        default=100.0, description="Value-loss clip; set it on the scale of returns."
    )
    vf_loss_coeff: float = Field(default=0.5, ge=0)
    entropy_coeff: float = Field(default=0.0, ge=0)
    use_kl_loss: bool = False
    kl_coeff: float = Field(default=0.2, ge=0)
    kl_target: PositiveFloat = 0.01
    num_epochs: PositiveInt = 10
    train_batch_size_per_learner: PositiveInt = 4000
    minibatch_size: PositiveInt = 256
    grad_clip: PositiveFloat | None = 0.5


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
