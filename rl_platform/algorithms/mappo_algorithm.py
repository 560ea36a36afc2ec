"""The ``mappo`` and ``ippo`` algorithms: MAPPO's actor-critics with RLlib's PPO.

The modules and the learner live in :mod:`rl_platform.algorithms.mappo` (their import
path is what policy exports record); the recurrent module in
:mod:`rl_platform.algorithms.recurrent_ac`. This module picks between them and sets PPO.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rl_platform import registry
from rl_platform.algorithms.mappo import ActorCriticModule, ValueNormPPOLearner
from rl_platform.config import ConfigError
from rl_platform.config.algorithms import IPPOParams, MAPPOParams

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    from rl_platform.algorithms.common import BuildContext


Hyperparams = MAPPOParams  # declared in rl_platform.config.algorithms

MAPPO_ONLY = {
    "use_value_norm", "orthogonal_init", "input_layernorm", "agent_id_in_obs",
    "critic_hidden_sizes", "log_std_init", "bounded_mean", "action_distribution",
    "standardize_advantages",
}  # fmt: skip


class ActorCriticPPO(registry.Algorithm):
    """MAPPO's actor-critics with PPO; subclasses say what the critics read."""

    Hyperparams: ClassVar[type[Hyperparams]] = Hyperparams
    batched_sampling: ClassVar[bool] = True
    global_state: ClassVar[bool] = True
    critic_obs_key: ClassVar[str] = "state"  # the key of GlobalStateEnv's obs

    @classmethod
    def new_config(cls) -> AlgorithmConfig:
        """A new RLlib ``PPOConfig``."""
        from ray.rllib.algorithms.ppo import PPOConfig

        return PPOConfig()

    @classmethod
    def check(cls, hyperparams: Hyperparams, context: BuildContext) -> None:
        """Refuse an activation the modules do not have.

        Raises:
            ConfigError: ``algorithm.network.activation`` is neither tanh nor relu.
        """
        experiment = context.experiment
        activation = experiment.algorithm.network.activation
        if activation not in ("tanh", "relu"):
            raise ConfigError(
                f"{experiment.name}: algorithm.network.activation = {activation!r}: "
                f"{experiment.algorithm.id} supports 'tanh' or 'relu'."
            )

    @classmethod
    def configure(
        cls, config: AlgorithmConfig, hyperparams: Hyperparams, context: BuildContext
    ) -> AlgorithmConfig:
        """The actor-critic modules, the value-normalizing learner and PPO's settings."""
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        hp = hyperparams
        network = context.experiment.algorithm.network
        model_config = {
            "actor_hiddens": list(network.hidden_sizes),
            "critic_hiddens": list(hp.critic_hidden_sizes or network.hidden_sizes),
            "activation": network.activation,
            "use_orthogonal_init": hp.orthogonal_init,
            "input_layernorm": hp.input_layernorm,
            "use_value_norm": hp.use_value_norm,
            # State-independent log-std, as in the MAPPO paper (RLlib's default model config
            # would otherwise merge in free_log_std=False and ignore log_std_init); the
            # tanh-normal's scale depends on the state, as in BenchMARL.
            "free_log_std": hp.action_distribution == "gaussian",
            "log_std_init": hp.log_std_init,
            "bounded_mean": hp.bounded_mean,
            "action_distribution": hp.action_distribution,
            "actor_obs_key": "obs",
            "critic_obs_key": cls.critic_obs_key,
        }
        module_class: type[ActorCriticModule] = ActorCriticModule
        if hp.recurrent:
            from rl_platform.algorithms.recurrent_ac import RecurrentActorCriticModule

            module_class = RecurrentActorCriticModule
            # RLlib's connectors read max_seq_len from the model config to cut chunks.
            model_config.update(max_seq_len=hp.chunk_length, rnn_hidden_dim=hp.rnn_hidden_dim)
        config = config.rl_module(
            rl_module_spec=RLModuleSpec(module_class=module_class, model_config=model_config)
        )
        # The modules act in the env's units (a bounded mean or a squashed sample lies in
        # the Box already), as greedy evaluation and serving apply them: RLlib's default
        # would map them again from [-1, 1] to the Box.
        config = config.environment(normalize_actions=False)
        config = config.learners(
            learner_class=ValueNormPPOLearner,
            learner_config_dict={
                **(config.learner_config_dict or {}),
                "standardize_advantages": hp.standardize_advantages,
            },
        )
        recurrent_only = {"recurrent", "chunk_length", "rnn_hidden_dim"}
        return config.training(**hp.model_dump(exclude=MAPPO_ONLY | recurrent_only))


class MAPPO(ActorCriticPPO):
    """``algorithm.id: mappo``: centralized critics on the global state."""

    Hyperparams: ClassVar[type[MAPPOParams]] = MAPPOParams
    critic_obs_key: ClassVar[str] = "state"


class IPPO(ActorCriticPPO):
    """``algorithm.id: ippo``: the same actor-critics with critics on local observations."""

    Hyperparams: ClassVar[type[IPPOParams]] = IPPOParams
    critic_obs_key: ClassVar[str] = "obs"
