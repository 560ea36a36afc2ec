"""MADDPG's configs: the RLlib config and algorithm, and the platform's algorithm.

:class:`MADDPGConfig` and :class:`MultiAgentDDPG` are RLlib's side; :class:`MADDPG` the
registered algorithm the builder calls (``new_config``, ``check``, ``configure``). See
:mod:`rl_platform.algorithms.maddpg` for the algorithm as a whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from rl_platform import registry
from rl_platform.algorithms.maddpg.learner import MADDPGLearner
from rl_platform.algorithms.maddpg.module import CRITIC_ID, MADDPGActorModule, MADDPGCriticModule
from rl_platform.algorithms.replay import (
    JointReplayAlgorithm,
    JointReplayConfig,
    check_one_learner,
)
from rl_platform.config import ConfigError
from rl_platform.config.algorithms import MADDPGParams

if TYPE_CHECKING:
    from rl_platform.algorithms.common import BuildContext


# --------------------------------------------------------------------------- algorithm


class MADDPGConfig(JointReplayConfig):
    """RLlib config of MADDPG."""

    algorithm_name: ClassVar[str] = "MADDPG"
    params_model: ClassVar[type[MADDPGParams]] = MADDPGParams

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or MultiAgentDDPG)
        defaults = self.params_model()
        self.lr = defaults.lr  # the actors'
        self.critic_lr = defaults.critic_lr
        self.gamma = defaults.gamma
        self.tau = defaults.tau
        self.train_batch_size_per_learner = defaults.train_batch_size_per_learner
        self.exploration_noise: float | list = defaults.exploration_noise
        self.gumbel_temperature = defaults.gumbel_temperature
        self.gumbel_hard = defaults.gumbel_hard
        self.actor_reg = defaults.actor_reg
        self.critic_hiddens: list[int] | None = None  # configure(): critic_hidden_sizes or network
        self.grad_clip = defaults.grad_clip
        self.action_dim = 0  # one agent's action size, filled by configure()

    @override(AlgorithmConfig)
    def training(
        self,
        *,
        critic_lr: float = NotProvided,
        tau: float = NotProvided,
        replay_buffer_capacity: int = NotProvided,
        num_steps_sampled_before_learning_starts: int = NotProvided,
        training_intensity: float | None = NotProvided,
        exploration_noise: float | list = NotProvided,
        gumbel_temperature: float = NotProvided,
        gumbel_hard: bool = NotProvided,
        actor_reg: float = NotProvided,
        critic_hiddens: list[int] | None = NotProvided,
        joint_agents: list[str] = NotProvided,
        state_dim: int = NotProvided,
        action_dim: int = NotProvided,
        **kwargs: Any,
    ) -> MADDPGConfig:
        """Set the MADDPG settings (and AlgorithmConfig's own ``training``)."""
        super().training(**kwargs)
        self._set_provided(locals())
        return self

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:  # noqa: D102
        return RLModuleSpec(module_class=MADDPGActorModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:  # noqa: D102
        return MADDPGLearner

    @property
    @override(AlgorithmConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return {
            **super()._model_config_auto_includes,
            "exploration_noise": self.exploration_noise,
            "gumbel_temperature": self.gumbel_temperature,
            "gumbel_hard": self.gumbel_hard,
        }

    def critic_spec(self, shared: bool, hiddens: list[int], activation: str) -> RLModuleSpec:
        """The learner-only spec of the critics' module."""
        n = len(self.joint_agents)
        return RLModuleSpec(
            module_class=MADDPGCriticModule,
            observation_space=gym.spaces.Box(-np.inf, np.inf, (self.state_dim,), np.float32),
            action_space=gym.spaces.Box(-np.inf, np.inf, (n * self.action_dim,), np.float32),
            learner_only=True,
            model_config={
                "n_agents": n,
                "state_dim": self.state_dim,
                "joint_action_dim": n * self.action_dim,
                "shared": shared,
                "critic_hiddens": list(self.critic_hiddens or hiddens),
                "fcnet_activation": activation,
            },
        )

    @override(AlgorithmConfig)
    def validate(self) -> None:  # noqa: D102
        super().validate()
        if self.action_dim <= 0:
            self._value_error("set training(action_dim=...) (rl_platform's builder does)")


class MultiAgentDDPG(JointReplayAlgorithm):
    """MADDPG: off-policy actor-critic training from a joint replay buffer."""

    batch_module_id: ClassVar[str] = CRITIC_ID

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> MADDPGConfig:  # noqa: D102
        return MADDPGConfig(cls)


# --------------------------------------------------------------------------- platform


Hyperparams = MADDPGParams  # declared in rl_platform.config.algorithms

PLATFORM_ONLY = {"agent_id_in_obs", "critic_hidden_sizes"}


def action_dim_of(context: BuildContext) -> int:
    """The size of the agents' one action space (Discrete: n; bounded 1-d Box: its length).

    Raises:
        ConfigError: agents' action spaces differ, or are neither Discrete nor a bounded
            1-d Box.
    """
    experiment = context.experiment
    probe = context.probe()
    agents = list(probe.possible_agents)
    space = probe.action_spaces[agents[0]]
    where = f"{experiment.name}: algorithm 'maddpg' on env {experiment.env.id!r}"
    if any(probe.action_spaces[a] != space for a in agents):
        raise ConfigError(f"{where}: the agents' action spaces differ; MADDPG needs one.")
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 1
        and np.isfinite(space.low).all()
        and np.isfinite(space.high).all()
    ):
        return int(space.shape[0])
    raise ConfigError(f"{where}: needs Discrete or bounded 1-d Box actions, got {space}.")


class MADDPG(registry.Algorithm):
    """``algorithm.id: maddpg``: deterministic actors, centralized critics (Lowe et al.)."""

    Hyperparams: ClassVar[type[MADDPGParams]] = MADDPGParams
    batched_sampling: ClassVar[bool] = True
    global_state: ClassVar[bool] = True
    module_spaces: ClassVar[bool] = True

    @classmethod
    def new_config(cls) -> MADDPGConfig:
        """A new :class:`MADDPGConfig`."""
        return MADDPGConfig()

    @classmethod
    def check(cls, hyperparams: Hyperparams, context: BuildContext) -> None:
        """Refuse action spaces MADDPG cannot act in and data-parallel learners.

        Raises:
            ConfigError: see :func:`action_dim_of` and :func:`check_one_learner`.
        """
        check_one_learner(context.experiment)
        action_dim_of(context)

    @classmethod
    def configure(
        cls, config: MADDPGConfig, hyperparams: Hyperparams, context: BuildContext
    ) -> MADDPGConfig:
        """Actions in env units, the joint replay's sizes, the learning rates, the critics."""
        from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec

        hp = hyperparams
        probe = context.probe()
        # The actor acts in env units already (squashed into the box).
        config = config.environment(normalize_actions=False, clip_actions=False)
        config = config.training(
            joint_agents=list(probe.possible_agents),
            state_dim=int(np.prod(probe.state_space.shape)),
            action_dim=action_dim_of(context),
            critic_hiddens=list(hp.critic_hidden_sizes) if hp.critic_hidden_sizes else None,
            **hp.model_dump(exclude=PLATFORM_ONLY),
        )
        network = context.experiment.algorithm.network
        shared = context.experiment.algorithm.shared_policy  # False with groups
        critic = config.critic_spec(shared, list(network.hidden_sizes), network.activation)
        return config.rl_module(
            rl_module_spec=MultiRLModuleSpec(rl_module_specs={CRITIC_ID: critic})
        )
