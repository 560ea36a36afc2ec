"""IQL / VDN / QMIX configs: the RLlib config and algorithm, and the platform's algorithms.

:class:`ValueDecompositionConfig` and :class:`ValueDecomposition` are RLlib's side;
:class:`ValueDecompositionAlgorithm` (and :class:`QMIX`, :class:`VDN`) the registered
algorithms the builder calls (``new_config``, ``check``, ``configure``). See
:mod:`rl_platform.algorithms.qmix` for the algorithm as a whole.
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
from rl_platform.algorithms.qmix.learner import ValueDecompositionLearner
from rl_platform.algorithms.qmix.module import MIXER_ID, MIXERS, AgentQModule, MixerModule
from rl_platform.algorithms.replay import (
    JointReplayAlgorithm,
    JointReplayBuffer,
    JointReplayConfig,
    SequenceReplayBuffer,
    check_one_learner,
)
from rl_platform.config import ConfigError
from rl_platform.config.algorithms import QMIXParams, ValueDecompositionParams, VDNParams

if TYPE_CHECKING:
    from rl_platform.algorithms.common import BuildContext


# --------------------------------------------------------------------------- algorithm


class ValueDecompositionConfig(JointReplayConfig):
    """RLlib config of IQL / VDN / QMIX (``mixer``: none, vdn, qmix)."""

    algorithm_name: ClassVar[str] = "IQL/VDN/QMIX"
    params_model: ClassVar[type[ValueDecompositionParams]] = ValueDecompositionParams

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or ValueDecomposition)
        defaults = self.params_model()
        self.mixer = "qmix"
        self.lr = defaults.lr
        self.gamma = defaults.gamma
        self.train_batch_size_per_learner = defaults.train_batch_size_per_learner
        self.target_network_update_freq = defaults.target_network_update_freq
        self.tau = defaults.tau
        self.double_q = defaults.double_q
        # A schedule as RLlib takes it: [[step, value], ...] lists.
        self.epsilon: float | list = defaults.model_dump(mode="json")["epsilon"]
        self.team_reduce = defaults.team_reduce
        self.grad_clip = defaults.grad_clip
        self.mixing_embed_dim = defaults.mixing_embed_dim
        self.hypernet_embed_dim = defaults.hypernet_embed_dim
        self.hypernet_layers = defaults.hypernet_layers
        self.recurrent = defaults.recurrent
        self.rnn_hidden_dim = defaults.rnn_hidden_dim
        self.max_seq_len = defaults.max_seq_len

    @override(AlgorithmConfig)
    def training(
        self,
        *,
        mixer: str = NotProvided,
        replay_buffer_capacity: int = NotProvided,
        num_steps_sampled_before_learning_starts: int = NotProvided,
        training_intensity: float | None = NotProvided,
        target_network_update_freq: int = NotProvided,
        tau: float = NotProvided,
        double_q: bool = NotProvided,
        epsilon: float | list = NotProvided,
        team_reduce: str = NotProvided,
        mixing_embed_dim: int = NotProvided,
        hypernet_embed_dim: int = NotProvided,
        hypernet_layers: int = NotProvided,
        recurrent: bool = NotProvided,
        rnn_hidden_dim: int = NotProvided,
        max_seq_len: int = NotProvided,
        joint_agents: list[str] = NotProvided,
        state_dim: int = NotProvided,
        **kwargs: Any,
    ) -> ValueDecompositionConfig:
        """Set the value-decomposition settings (and AlgorithmConfig's own ``training``)."""
        super().training(**kwargs)
        self._set_provided(locals())
        return self

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:  # noqa: D102
        return RLModuleSpec(module_class=AgentQModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:  # noqa: D102
        return ValueDecompositionLearner

    @property
    @override(AlgorithmConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        extra = {}
        if self.recurrent:  # the feedforward modules' config stays as it was
            extra = {
                "recurrent": True,
                "rnn_hidden_dim": self.rnn_hidden_dim,
                "max_seq_len": self.max_seq_len,
            }
        return {**super()._model_config_auto_includes, "epsilon": self.epsilon, **extra}

    def mixer_spec(self) -> RLModuleSpec:
        """The learner-only spec of the mixer module (needs the agents and state size)."""
        return RLModuleSpec(
            module_class=MixerModule,
            observation_space=gym.spaces.Box(-np.inf, np.inf, (self.state_dim,), np.float32),
            action_space=gym.spaces.Box(-np.inf, np.inf, (len(self.joint_agents),), np.float32),
            learner_only=True,
            model_config={
                "mixer": self.mixer,
                "n_agents": len(self.joint_agents),
                "state_dim": self.state_dim,
                "mixing_embed_dim": self.mixing_embed_dim,
                "hypernet_embed_dim": self.hypernet_embed_dim,
                "hypernet_layers": self.hypernet_layers,
            },
        )

    @override(AlgorithmConfig)
    def validate(self) -> None:  # noqa: D102
        super().validate()
        if self.mixer not in MIXERS:
            self._value_error(f"mixer must be one of {MIXERS}, got {self.mixer!r}")


class ValueDecomposition(JointReplayAlgorithm):
    """IQL, VDN or QMIX: off-policy training from a joint replay buffer."""

    batch_module_id: ClassVar[str] = MIXER_ID

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> ValueDecompositionConfig:  # noqa: D102
        return ValueDecompositionConfig(cls)

    @override(JointReplayAlgorithm)
    def make_replay(self) -> JointReplayBuffer:  # noqa: D102
        config = self.config
        if not config.recurrent:
            return super().make_replay()
        # Capacity and batches count sequences (of up to max_seq_len steps).
        return SequenceReplayBuffer(
            max(1, config.replay_buffer_capacity // config.max_seq_len),
            config.joint_agents,
            config.state_dim,
            seed=config.seed,
            seq_len=config.max_seq_len,
            hidden_dim=config.rnn_hidden_dim,
        )


# --------------------------------------------------------------------------- platform


Hyperparams = ValueDecompositionParams  # declared in rl_platform.config.algorithms

VALUE_ONLY = {"agent_id_in_obs"}


class ValueDecompositionAlgorithm(registry.Algorithm):
    """IQL, VDN and QMIX: per-agent Q networks, combined by the ``mixer`` of a subclass."""

    Hyperparams: ClassVar[type[Hyperparams]] = Hyperparams
    batched_sampling: ClassVar[bool] = True
    global_state: ClassVar[bool] = True
    module_spaces: ClassVar[bool] = True
    discrete_only: ClassVar[bool] = True  # check() refuses Box actions
    mixer: ClassVar[str] = "qmix"

    @classmethod
    def new_config(cls) -> ValueDecompositionConfig:
        """A new :class:`ValueDecompositionConfig`."""
        return ValueDecompositionConfig()

    @classmethod
    def check(cls, hyperparams: Hyperparams, context: BuildContext) -> None:
        """Refuse envs whose actions are not discrete, and data-parallel learners.

        Raises:
            ConfigError: an agent's action space is not ``Discrete``, or
                ``resources.num_learners`` is above 1 (:func:`check_one_learner`).
        """
        experiment = context.experiment
        check_one_learner(experiment)
        probe = context.probe()
        for agent in probe.possible_agents:
            space = probe.action_spaces[agent]
            if not isinstance(space, gym.spaces.Discrete):
                raise ConfigError(
                    f"{experiment.name}: algorithm {experiment.algorithm.id!r} needs discrete "
                    f"actions, but agent {agent} of env {experiment.env.id!r} has {space}; "
                    "use a discrete env option (e.g. env.config.discrete: true) or a policy-"
                    "gradient algorithm (ppo, mappo)."
                )

    @classmethod
    def configure(
        cls, config: ValueDecompositionConfig, hyperparams: Hyperparams, context: BuildContext
    ) -> ValueDecompositionConfig:
        """The mixer, the joint replay's agents and state size, and the mixer module."""
        from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec

        probe = context.probe()
        config = config.training(
            mixer=cls.mixer,
            joint_agents=list(probe.possible_agents),
            state_dim=int(np.prod(probe.state_space.shape)),
            **hyperparams.model_dump(exclude=VALUE_ONLY),
        )
        return config.rl_module(
            rl_module_spec=MultiRLModuleSpec(rl_module_specs={MIXER_ID: config.mixer_spec()})
        )


class QMIX(ValueDecompositionAlgorithm):
    """``algorithm.id: qmix``: monotonic mixing by state hypernetworks (Rashid et al. 2018)."""

    Hyperparams: ClassVar[type[QMIXParams]] = QMIXParams
    mixer: ClassVar[str] = "qmix"


class VDN(ValueDecompositionAlgorithm):
    """``algorithm.id: vdn``: the joint value is the sum of the agents' (Sunehag et al.)."""

    Hyperparams: ClassVar[type[VDNParams]] = VDNParams
    mixer: ClassVar[str] = "vdn"
