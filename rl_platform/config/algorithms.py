"""Each algorithm's hyperparameters, declared once, and the ``algorithm`` section per id.

The models here are torch- and Ray-free: the experiment YAML is validated against them
before any algorithm module is imported, the JSON Schema offers each algorithm's own
fields, and the RLlib configs of :mod:`rl_platform.algorithms` take their defaults from
them. Names follow RLlib where RLlib has the setting, and one concept has one name
across algorithms (``lr``, ``gamma``, ``grad_clip``, ``train_batch_size_per_learner``).

``algorithm`` is a union discriminated by ``id`` (:data:`AlgorithmSection`); an
algorithm registered at run time (``registry.register_algorithm``) without a spec here is
read as a :class:`PluginAlgorithmSpec` (see :mod:`rl_platform.config.loading`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rl_platform.config.base import ConfigModel
from rl_platform.config.groups import GROUP_NAME, SHARED_MODULE_ID
from rl_platform.config.sections import NetworkSpec
from rl_platform.yaml_model import YamlModel, strict_field

# --------------------------------------------------------------------------- hyperparameters


class AlgorithmParams(YamlModel):
    """The base of every algorithm's hyperparameters: unknown keys refused, frozen.

    Reads like a mapping too (``params["lr"]``, ``params.get("recurrent")``, ``"lr" in
    params``) for code that treats hyperparameters generically (sweeps, the sampler).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __getitem__(self, name: str) -> Any:
        if name not in type(self).model_fields:
            raise KeyError(name)
        return getattr(self, name)

    def __contains__(self, name: object) -> bool:
        return name in type(self).model_fields

    def get(self, name: str, default: Any = None) -> Any:
        """The hyperparameter `name`, or `default` when this algorithm has none of it."""
        return getattr(self, name) if name in self else default


class PPOParams(AlgorithmParams):
    """PPO hyperparameters (RLlib's names; defaults suit small multi-agent tasks)."""

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


class MAPPOParams(PPOParams):
    """PPO's hyperparameters with the MAPPO paper's defaults, plus the MAPPO switches."""

    lr: PositiveFloat = 5e-4
    num_epochs: PositiveInt = 5
    minibatch_size: PositiveInt = 1000
    entropy_coeff: float = Field(default=0.01, ge=0)
    vf_clip_param: PositiveFloat = Field(default=10.0, description="On the normalized scale.")
    grad_clip: PositiveFloat | None = 10.0
    use_value_norm: bool = True
    orthogonal_init: bool = True
    input_layernorm: bool = False
    agent_id_in_obs: bool = Field(
        default=True, description="Append the agent's one-hot index (a shared policy or group)."
    )
    critic_hidden_sizes: tuple[PositiveInt, ...] | None = Field(
        default=None, description="Critic layers; default: algorithm.network.hidden_sizes."
    )
    log_std_init: float = 0.0
    bounded_mean: bool = Field(
        default=True, description="Squash the Gaussian's mean into a bounded Box action space."
    )
    action_distribution: Literal["gaussian", "tanh_normal"] = Field(
        default="gaussian",
        description=(
            "Box actions: 'gaussian' (mean and a free log-std; samples clipped by the env) "
            "or 'tanh_normal' (location and state-dependent scale, samples squashed into "
            "the Box: BenchMARL's)."
        ),
    )
    standardize_advantages: bool = Field(
        default=True, description="Standardize advantages per batch (RLlib's PPO does)."
    )
    recurrent: bool = Field(
        default=False,
        description=(
            "GRU actor and critic (obs -> MLP -> GRU -> head), hidden state carried through "
            "episodes, trained on chunks of chunk_length steps (the MAPPO paper's rMAPPO)."
        ),
    )
    chunk_length: PositiveInt = Field(
        default=10,
        description=(
            "Recurrent: steps per training sequence (RLlib's max_seq_len; the MAPPO "
            "paper's data_chunk_length). Episodes are cut into zero-padded chunks."
        ),
    )
    rnn_hidden_dim: PositiveInt | None = Field(
        default=None, description="Recurrent: GRU width; None: the last hidden layer's."
    )


IPPOParams = MAPPOParams  # the same actor-critics, critics on local observations


class ValueDecompositionParams(AlgorithmParams):
    """IQL / VDN / QMIX hyperparameters (RLlib's names where RLlib has them).

    Defaults follow the QMIX paper and pymarl for small tasks; ``epsilon`` is an RLlib
    schedule over env steps (``[[0, 1.0], [50000, 0.05]]``) or a constant.
    """

    lr: PositiveFloat = 5e-4
    gamma: float = Field(default=0.99, gt=0, le=1)
    train_batch_size_per_learner: PositiveInt = Field(
        default=128, description="Joint transitions per update (sequences when recurrent)."
    )
    replay_buffer_capacity: PositiveInt = 50_000
    num_steps_sampled_before_learning_starts: int = Field(default=1_000, ge=0)
    training_intensity: PositiveFloat | None = Field(
        default=None,
        description=(
            "Replayed / sampled transitions (sequences when recurrent); None: one update "
            "per iteration."
        ),
    )
    target_network_update_freq: int = Field(
        default=500, ge=0, description="Env steps between target-network updates."
    )
    tau: float = Field(default=1.0, gt=0, le=1, description="1: hard copies; < 1: Polyak.")
    double_q: bool = True
    epsilon: float | list[tuple[int, float]] = Field(
        default_factory=lambda: [(0, 1.0), (50_000, 0.05)],
        description="Exploration epsilon: a constant or [[env_step, value], ...].",
    )
    grad_clip: PositiveFloat | None = 10.0
    team_reduce: Literal["mean", "sum"] = Field(
        default="mean", description="VDN/QMIX: the team reward is the agents' mean or sum."
    )
    mixing_embed_dim: PositiveInt = 32
    hypernet_embed_dim: PositiveInt = 64
    hypernet_layers: Literal[1, 2] = 1
    recurrent: bool = Field(
        default=False,
        description=(
            "GRU agents (obs -> fc -> GRUCell -> fc -> Q; network.hidden_sizes unused), "
            "hidden state carried through episodes, trained on replayed sequences."
        ),
    )
    rnn_hidden_dim: PositiveInt = Field(default=64, description="Recurrent agents' width.")
    max_seq_len: PositiveInt = Field(
        default=20,
        description=(
            "Recurrent: steps per replayed sequence (episodes are cut into these; replay "
            "capacity is replay_buffer_capacity // max_seq_len sequences)."
        ),
    )
    agent_id_in_obs: bool = Field(
        default=True, description="Append the agent's one-hot index (a shared policy or group)."
    )


# IQL, VDN and QMIX differ only in how agents' values are combined: one model for all.
IQLParams = VDNParams = QMIXParams = ValueDecompositionParams


class MADDPGParams(AlgorithmParams):
    """MADDPG hyperparameters (RLlib's names where RLlib has them; ``lr``: the actors').

    Defaults follow the paper (gamma 0.95, tau 0.01, batch 1024, gradient clip 0.5, two
    64-unit layers from ``algorithm.network``) except the learning rates (the paper's
    0.01 is unstable with small batches; 1e-3 as in most reimplementations).
    """

    lr: PositiveFloat = Field(default=1e-3, description="The actors' learning rate.")
    critic_lr: PositiveFloat = 1e-3
    gamma: float = Field(default=0.95, gt=0, le=1)
    tau: float = Field(default=0.01, gt=0, le=1, description="Polyak rate per gradient step.")
    train_batch_size_per_learner: PositiveInt = Field(
        default=1024, description="Joint transitions per gradient step."
    )
    replay_buffer_capacity: PositiveInt = 1_000_000
    num_steps_sampled_before_learning_starts: int = Field(default=1_024, ge=0)
    training_intensity: PositiveFloat | None = Field(
        default=None,
        description="Replayed / sampled transitions; None: one update per iteration.",
    )
    exploration_noise: float | list[tuple[int, float]] = Field(
        default=0.1,
        description="Box actions: Gaussian noise std as a fraction of the half-width; "
        "a constant or [[env_step, value], ...].",
    )
    gumbel_temperature: PositiveFloat = 1.0
    gumbel_hard: bool = Field(
        default=True, description="Straight-through one-hot Gumbel-softmax (Discrete)."
    )
    actor_reg: float = Field(
        default=1e-3, ge=0, description="Penalty on the actor's squared preactivations."
    )
    critic_hidden_sizes: tuple[PositiveInt, ...] | None = Field(
        default=None, description="Critic layers; default: algorithm.network.hidden_sizes."
    )
    grad_clip: PositiveFloat | None = 0.5
    agent_id_in_obs: bool = Field(
        default=True, description="Append the agent's one-hot index (a shared policy or group)."
    )


# --------------------------------------------------------------------------- the section

ID_HELP = "A registered algorithm id (`rlp envs list` shows them too)."
HYPERPARAMS_HELP = "The algorithm's hyperparameters; unset ones take the defaults shown."
RLLIB_HELP = (
    "Any other setting of the algorithm's RLlib AlgorithmConfig (e.g. use_gae: false), "
    "set after everything else; a setting the YAML has elsewhere is refused."
)

# RLlib config settings the experiment YAML sets elsewhere -> where (besides the
# algorithm's hyperparameters, whose names are RLlib's: algorithm.hyperparams.<name>).
RLLIB_OWNED: dict[str, str] = {
    "num_env_runners": "resources.num_env_runners",
    "num_envs_per_env_runner": "resources.num_envs_per_env_runner",
    "num_cpus_per_env_runner": "resources.num_cpus_per_env_runner",
    "rollout_fragment_length": "resources.rollout_fragment_length",
    "num_learners": "resources.num_learners",
    "num_cpus_per_learner": "resources.num_cpus_per_learner",
    "num_gpus_per_learner": "resources.num_gpus_per_learner",
    "max_num_env_runner_restarts": "resources.max_env_runner_restarts",
    "env_runner_cls": "resources.sampler",
    "seed": "seed",
    "env": "env.id",
    "env_config": "env.config",
    "policies": "algorithm.shared_policy or algorithm.groups",
    "policy_mapping_fn": "algorithm.shared_policy or algorithm.groups",
    "policies_to_train": "algorithm.shared_policy or algorithm.groups",
    "model": "algorithm.network",
    "train_batch_size": "algorithm.hyperparams.train_batch_size_per_learner",
    "sgd_minibatch_size": "algorithm.hyperparams.minibatch_size",
}
# Settings the platform itself must own (no YAML field) -> why.
RLLIB_REFUSED: dict[str, str] = {
    "enable_rl_module_and_learner": "the platform runs on RLlib's new API stack only",
    "enable_env_runner_and_connector_v2": "the platform runs on RLlib's new API stack only",
    "callbacks_class": "the platform's features (rewards, safety, ...) set the callbacks",
    "vf_share_layers": (
        "an old-API-stack setting RLlib's new stack does not read; the platform's "
        "modules keep separate actor and critic networks"
    ),
}


def rllib_option_problem(key: str, hyperparams: Any) -> str | None:
    """Why ``algorithm.rllib.<key>`` is refused without asking RLlib, or None.

    `hyperparams`: the algorithm's hyperparameter names (a key among them is set there).
    """
    if key in hyperparams:
        return f"set it as algorithm.hyperparams.{key}"
    if key in RLLIB_OWNED:
        return f"the experiment sets it: use {RLLIB_OWNED[key]}"
    if key in RLLIB_REFUSED or key.startswith("callbacks"):
        return f"refused: {RLLIB_REFUSED.get(key, RLLIB_REFUSED['callbacks_class'])}"
    if key.startswith("_"):
        return "a private attribute of RLlib's config"
    return None


class AlgorithmSpec(ConfigModel):
    """Which algorithm trains the agents, and how policies map to agents.

    The base of each algorithm's section: subclasses fix ``id`` and type ``hyperparams``.
    """

    id: str = Field(description=ID_HELP)
    shared_policy: bool = Field(
        default=True,
        description="One module for all agents (parameter sharing) or one module per agent.",
    )
    groups: dict[str, list[str]] | None = Field(
        default=None,
        description=(
            "One module per group, shared by its agents: {name: [agent ids or glob "
            "patterns]}; every agent in exactly one group. Replaces shared_policy "
            "(shared_policy: true is refused with it)."
        ),
    )
    hyperparams: AlgorithmParams = Field(
        default_factory=AlgorithmParams, description=HYPERPARAMS_HELP
    )
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    rllib: dict[str, Any] = Field(default_factory=dict, description=RLLIB_HELP)

    # YamlModel's strict check on every field but `id`: pydantic allows no before-validator
    # on a discriminated union's tag (a Literal string, which needs none).
    @field_validator("shared_policy", "hyperparams", "network", mode="before")
    @classmethod
    def _strict_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        return strict_field(cls, value, info)

    @field_validator("groups")
    @classmethod
    def _group_names(cls, value: dict[str, list[str]] | None) -> Any:
        if value is None:
            return value
        if not value:
            raise ValueError("give at least one group, or leave groups out")
        for name, entries in value.items():
            if not GROUP_NAME.fullmatch(name) or name == SHARED_MODULE_ID:
                raise ValueError(
                    f"group name {name!r}: a module id must start with a letter and hold "
                    f"only letters, digits, _ and - (and not be {SHARED_MODULE_ID!r})"
                )
            if not entries or not all(isinstance(e, str) and e for e in entries):
                raise ValueError(f"group {name!r}: give a non-empty list of agent ids or patterns")
        return value

    @model_validator(mode="after")
    def _groups_or_shared(self) -> Any:
        if self.groups and self.shared_policy and "shared_policy" in self.model_fields_set:
            raise ValueError(
                "groups and shared_policy: true contradict each other (groups gives one "
                "module per group); leave shared_policy out when you set groups"
            )
        if self.groups and self.shared_policy:  # groups replace the default
            object.__setattr__(self, "shared_policy", False)
        return self

    @field_validator("rllib")
    @classmethod
    def _rllib_not_set_elsewhere(cls, value: dict[str, Any], info: ValidationInfo) -> Any:
        hyperparams = info.data.get("hyperparams")
        names = type(hyperparams).model_fields if isinstance(hyperparams, BaseModel) else ()
        for key in value:
            problem = rllib_option_problem(key, names)
            if problem:
                raise ValueError(f"{key}: {problem}")
        return value


class PPOSpec(AlgorithmSpec):
    """``algorithm`` with ``id: ppo``: RLlib PPO with independent actor-critics."""

    id: Literal["ppo"] = Field(description=ID_HELP)
    hyperparams: PPOParams = Field(default_factory=PPOParams, description=HYPERPARAMS_HELP)


class MAPPOSpec(AlgorithmSpec):
    """``algorithm`` with ``id: mappo``: centralized critics on the global state."""

    id: Literal["mappo"] = Field(description=ID_HELP)
    hyperparams: MAPPOParams = Field(default_factory=MAPPOParams, description=HYPERPARAMS_HELP)


class IPPOSpec(AlgorithmSpec):
    """``algorithm`` with ``id: ippo``: the MAPPO actor-critics, critics on local obs."""

    id: Literal["ippo"] = Field(description=ID_HELP)
    hyperparams: IPPOParams = Field(default_factory=IPPOParams, description=HYPERPARAMS_HELP)


class IQLSpec(AlgorithmSpec):
    """``algorithm`` with ``id: iql``: independent double-DQN learners."""

    id: Literal["iql"] = Field(description=ID_HELP)
    hyperparams: IQLParams = Field(default_factory=IQLParams, description=HYPERPARAMS_HELP)


class VDNSpec(AlgorithmSpec):
    """``algorithm`` with ``id: vdn``: the joint value is the sum of the agents'."""

    id: Literal["vdn"] = Field(description=ID_HELP)
    hyperparams: VDNParams = Field(default_factory=VDNParams, description=HYPERPARAMS_HELP)


class QMIXSpec(AlgorithmSpec):
    """``algorithm`` with ``id: qmix``: monotonic mixing by state hypernetworks."""

    id: Literal["qmix"] = Field(description=ID_HELP)
    hyperparams: QMIXParams = Field(default_factory=QMIXParams, description=HYPERPARAMS_HELP)


class MADDPGSpec(AlgorithmSpec):
    """``algorithm`` with ``id: maddpg``: deterministic actors, centralized critics."""

    id: Literal["maddpg"] = Field(description=ID_HELP)
    hyperparams: MADDPGParams = Field(default_factory=MADDPGParams, description=HYPERPARAMS_HELP)


ALGORITHM_SPECS: dict[str, type[AlgorithmSpec]] = {
    "ppo": PPOSpec,
    "mappo": MAPPOSpec,
    "ippo": IPPOSpec,
    "iql": IQLSpec,
    "vdn": VDNSpec,
    "qmix": QMIXSpec,
    "maddpg": MADDPGSpec,
}
"""The built-in algorithm ids -> their section (the registry's ids must match)."""

AlgorithmSection = Annotated[
    PPOSpec | MAPPOSpec | IPPOSpec | IQLSpec | VDNSpec | QMIXSpec | MADDPGSpec,
    Field(discriminator="id"),
]
"""The ``algorithm`` section: one spec per built-in id, chosen by ``id``."""


class PluginAlgorithmSpec(AlgorithmSpec):
    """``algorithm`` of an id registered at run time without a spec in this module.

    ``hyperparams`` is read as a mapping here and checked against the registered
    module's ``Hyperparams`` when the experiment is resolved against the registry (which
    imports that module).
    """

    id: str = Field(description=ID_HELP)
    hyperparams: Any = Field(default_factory=dict, description=HYPERPARAMS_HELP)
