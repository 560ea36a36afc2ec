"""PPO from RLlib with independent actor-critics (IPPO when parameters are per agent).

Each agent acts and is criticised on its own observation; with ``shared_policy: true``
all agents share one network (parameter sharing, the usual default for homogeneous
agents). Centralized critics (MAPPO) are a separate algorithm. On an env with action
masks the modules are :class:`~rl_platform.algorithms.mappo.ActorCriticModule` reading
``observations`` (RLlib's default module ignores masks): docs/algorithms.md, "PPO".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym

from rl_platform import registry
from rl_platform.config import ConfigError
from rl_platform.config.algorithms import PPOParams as Hyperparams

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    from rl_platform.algorithms.common import BuildContext


def has_action_masks(env: Any) -> bool:
    """Whether an env's observations carry RLlib's ``{"observations", "action_mask"}``."""
    return any(
        isinstance(space, gym.spaces.Dict) and "action_mask" in space.spaces
        for space in env.observation_spaces.values()
    )


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
        """PPO's training settings: the hyperparameters as they are (masking modules if needed).

        Raises:
            ConfigError: the env has action masks and the activation is neither tanh
                nor relu (the masking module's two).
        """
        from rl_platform.algorithms.mappo import DataParallelPPOLearner

        config = config.training(**hyperparams.model_dump()).learners(
            learner_class=DataParallelPPOLearner
        )
        env = context.probe()
        try:
            masked = has_action_masks(env)
        finally:
            close = getattr(env, "close", None)
            if callable(close):
                close()
        if not masked:
            return config
        return config.rl_module(rl_module_spec=masking_module_spec(context))


def masking_module_spec(context: BuildContext) -> Any:
    """An actor-critic that masks its logits, both heads on ``observations``, no value norm.

    Raises:
        ConfigError: the activation is neither tanh nor relu.
    """
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rl_platform.algorithms.mappo import ActorCriticModule

    experiment = context.experiment
    network = experiment.algorithm.network
    if network.activation not in ("tanh", "relu"):
        raise ConfigError(
            f"{experiment.name}: algorithm.network.activation = {network.activation!r}: ppo "
            "on an env with action masks supports 'tanh' or 'relu'."
        )
    model_config = {
        "actor_hiddens": list(network.hidden_sizes),
        "critic_hiddens": list(network.hidden_sizes),
        "activation": network.activation,
        "use_orthogonal_init": True,
        "use_value_norm": False,
        "free_log_std": True,
        "actor_obs_key": "observations",
        "critic_obs_key": "observations",
    }
    return RLModuleSpec(module_class=ActorCriticModule, model_config=model_config)
