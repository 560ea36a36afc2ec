"""Curiosity: an Intrinsic Curiosity Module (ICM) for PPO, MAPPO and IPPO (``curiosity:``).

Pathak et al. 2017. :class:`CuriosityModule` (one learner-only ICM per policy module),
:class:`CuriosityRewardConnector` (adds the normalized forward-model error to the
rewards before GAE), :class:`CuriosityLearnerMixin` (over the algorithm's own learner),
:class:`CuriosityMetricsCallback` (``result["curiosity"]``) and
:func:`is_curiosity_module_id` (keeps ICMs out of policy exports). The model, the
normalization and the metrics: docs/advanced.md, "Curiosity". Imported by ``config.py``
only after the experiment's env class, which already imports Ray and torch.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.connectors.common.add_observations_from_episodes_to_batch import (
    AddObservationsFromEpisodesToBatch,
)
from ray.rllib.connectors.common.numpy_to_tensor import NumpyToTensor
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.connectors.learner.add_next_observations_from_episodes_to_train_batch import (
    AddNextObservationsFromEpisodesToTrainBatch,
)
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import SelfSupervisedLossAPI
from ray.rllib.core.rl_module.torch import TorchRLModule

from rl_platform import registry
from rl_platform.algorithms.common import module_ids
from rl_platform.algorithms.data_parallel import all_reduce_sum
from rl_platform.algorithms.mappo import DataParallelPPOLearner, ValueNormPPOLearner
from rl_platform.registry import env_config_of

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    from rl_platform.config import ExperimentConfig

ICM_PREFIX = "icm_"
SUPPORTED_ALGORITHMS = ("ppo", "mappo", "ippo")
RESULT_KEY = "curiosity"  # result["curiosity"]: the iteration's figures, mean over modules
# Learner metrics of every ICM module; their means over modules make result["curiosity"].
METRICS = (
    "forward_loss",
    "inverse_loss",
    "intrinsic_reward",
    "intrinsic_reward_weighted",
    "extrinsic_reward",
)
MIN_REWARD_SCALE = 1e-8  # floor of the running mean the intrinsic reward is divided by


def is_curiosity_module_id(module_id: str) -> bool:
    """Whether a module id names an ICM (``icm_<policy module>``), not a policy."""
    return module_id.startswith(ICM_PREFIX)


def curiosity_module_id(policy_module_id: str) -> str:
    """The id of the ICM that serves a policy module."""
    return f"{ICM_PREFIX}{policy_module_id}"


def check(experiment: ExperimentConfig, env_cls: type) -> None:
    """Raise ValueError when curiosity cannot run with this algorithm or env.

    Supported: ``ppo``, ``mappo`` and ``ippo`` (the intrinsic reward enters PPO's
    advantages) on envs whose agents observe a Box and act in a Discrete or Box space.
    """
    algorithm = experiment.algorithm.id
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise ValueError(
            f"algorithm {algorithm!r} is not supported: the intrinsic reward is added "
            "before PPO's advantages are computed, so curiosity runs with "
            f"{', '.join(SUPPORTED_ALGORITHMS)} (value-based algorithms and MADDPG train "
            "from replay buffers that this ICM does not rewrite)."
        )
    env = env_cls(env_config_of(experiment))
    for agent in env.possible_agents:
        obs_space, action_space = env.observation_spaces[agent], env.action_spaces[agent]
        if not isinstance(obs_space, gym.spaces.Box):
            raise ValueError(
                f"agent {agent!r} of env {experiment.env.id!r} observes a "
                f"{type(obs_space).__name__}; the ICM encodes Box observations only."
            )
        if not isinstance(action_space, (gym.spaces.Discrete, gym.spaces.Box)):
            raise ValueError(
                f"agent {agent!r} of env {experiment.env.id!r} acts in a "
                f"{type(action_space).__name__}; the ICM's inverse model handles Discrete "
                "and Box actions only."
            )
        if is_curiosity_module_id(agent) and not experiment.algorithm.shared_policy:
            raise ValueError(
                f"agent {agent!r}: module ids starting with {ICM_PREFIX!r} are reserved for "
                "the ICM modules; set algorithm.shared_policy: true or rename the agents."
            )


# --------------------------------------------------------------------------- the module


def _mlp(in_dim: int, hidden_sizes: list[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(in_dim, size), nn.ELU()]
        in_dim = size
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class CuriosityModule(TorchRLModule, SelfSupervisedLossAPI):
    """An ICM for one policy module: feature encoder, forward model, inverse model.

    model_config: ``feature_dim``, ``hidden_sizes`` (of all three networks),
    ``forward_loss_weight`` (b), ``weight`` (of the intrinsic reward), ``lr``,
    ``obs_key`` (the part of a Dict observation to encode; None for flat observations)
    and ``policy_module`` (the id of the policy it serves). Learner-only: it has no
    action-computing forward pass.
    """

    def setup(self) -> None:  # noqa: D102
        cfg = self.model_config
        self.obs_key = cfg.get("obs_key")
        space = self.observation_space
        if isinstance(space, gym.spaces.Dict):
            space = space[self.obs_key]
        self._obs_shape = space.shape
        obs_dim = int(np.prod(space.shape))
        feature_dim = int(cfg["feature_dim"])
        hidden = [int(h) for h in cfg["hidden_sizes"]]
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        if self.discrete:
            self.action_dim = int(self.action_space.n)
        else:
            self.action_dim = int(np.prod(self.action_space.shape))
            low = np.asarray(self.action_space.low, dtype=np.float32).reshape(-1)
            high = np.asarray(self.action_space.high, dtype=np.float32).reshape(-1)
            # Unbounded sides stay unclipped; the buffers follow the module's device.
            self.register_buffer("_action_low", torch.as_tensor(low), persistent=False)
            self.register_buffer("_action_high", torch.as_tensor(high), persistent=False)
        self.encoder = _mlp(obs_dim, hidden, feature_dim)
        self.forward_model = _mlp(feature_dim + self.action_dim, hidden, feature_dim)
        self.inverse_model = _mlp(2 * feature_dim, hidden, self.action_dim)
        # Running statistics of the raw intrinsic reward (count and mean).
        self.register_buffer("reward_count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("reward_mean", torch.zeros((), dtype=torch.float64))

    # ---------------- inputs ----------------
    def _features(self, obs: Any) -> torch.Tensor:
        x = obs[self.obs_key] if isinstance(obs, dict) else obs
        lead = x.shape[: x.dim() - len(self._obs_shape)]
        return self.encoder(x.reshape(*lead, -1).float())

    def action_input(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as the forward model's input: one-hot (Discrete) or clipped floats (Box)."""
        if self.discrete:
            return F.one_hot(actions.long(), self.action_dim).float()
        return self._clip(actions.reshape(actions.shape[0], -1).float())

    def _clip(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(actions, self._action_high), self._action_low)

    # ---------------- forward passes ----------------
    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        phi = self._features(batch[Columns.OBS])
        next_phi = self._features(batch[Columns.NEXT_OBS])
        predicted = self.forward_model(
            torch.cat([phi, self.action_input(batch[Columns.ACTIONS])], dim=-1)
        )
        forward_error = 0.5 * (predicted - next_phi).pow(2).sum(-1)
        return {Columns.INTRINSIC_REWARDS: forward_error, "phi": phi, "next_phi": next_phi}

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError("CuriosityModule is learner-only: it computes no actions")

    @torch.no_grad()
    def intrinsic_rewards(self, batch: dict[str, Any]) -> torch.Tensor:
        """Raw intrinsic reward of each transition (forward model error), (B,)."""
        return self._forward_train(batch)[Columns.INTRINSIC_REWARDS]

    def inverse_loss(
        self, phi: torch.Tensor, next_phi: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """Per-transition inverse loss (B,): cross-entropy or squared error of the action."""
        predicted = self.inverse_model(torch.cat([phi, next_phi], dim=-1))
        if self.discrete:
            return F.cross_entropy(predicted, actions.long(), reduction="none")
        target = self._clip(actions.reshape(actions.shape[0], -1).float())
        return (predicted - target).pow(2).mean(-1)

    def losses(
        self, batch: dict[str, Any], fwd_out: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(forward loss, inverse loss), means over the transitions ``LOSS_MASK`` keeps."""
        inverse = self.inverse_loss(fwd_out["phi"], fwd_out["next_phi"], batch[Columns.ACTIONS])
        forward = fwd_out[Columns.INTRINSIC_REWARDS]
        mask = batch.get(Columns.LOSS_MASK)
        if mask is None:
            return forward.mean(), inverse.mean()
        weight = mask.float()
        count = weight.sum().clamp(min=1.0)
        return (forward * weight).sum() / count, (inverse * weight).sum() / count

    def compute_self_supervised_loss(  # noqa: D102
        self,
        *,
        learner: Any,
        module_id: str,
        config: Any,
        batch: dict[str, Any],
        fwd_out: dict[str, Any],
    ) -> torch.Tensor:
        forward, inverse = self.losses(batch, fwd_out)
        b = float(self.model_config["forward_loss_weight"])
        learner.metrics.log_dict(
            {"forward_loss": forward.item(), "inverse_loss": inverse.item()},
            key=module_id,
            window=1,
        )
        return b * forward + (1.0 - b) * inverse

    # ---------------- reward normalization ----------------
    @torch.no_grad()
    def update_reward_stats(self, raw: torch.Tensor) -> None:
        """Fold raw intrinsic rewards into the running (count-weighted) mean."""
        x = raw.detach().double().reshape(-1)
        # Data-parallel learners fold in every learner's shard, so their scales stay equal.
        count = torch.tensor(float(x.numel()), dtype=torch.float64, device=x.device)
        total_x, n = all_reduce_sum(torch.stack([x.sum(), count]))
        if n == 0:
            return
        total = self.reward_count + n
        self.reward_mean += (total_x / n - self.reward_mean) * n / total
        self.reward_count.copy_(total)

    def reward_scale(self) -> torch.Tensor:
        """What raw intrinsic rewards are divided by: their running mean (1 before data)."""
        if self.reward_count < 1:
            return torch.ones((), dtype=torch.float64, device=self.reward_count.device)
        return self.reward_mean.clamp(min=MIN_REWARD_SCALE)


# --------------------------------------------------------------------------- the learner


class CuriosityRewardConnector(ConnectorV2):
    """Learner connector piece: add each policy's weighted intrinsic reward to its rewards.

    Runs after ``NumpyToTensor`` and before PPO's GAE piece. For every policy module in
    the batch that has an ICM (``icm_<module>``), it computes the raw intrinsic rewards,
    updates the ICM's running statistics, adds ``weight * raw / running_mean`` (0 where
    ``LOSS_MASK`` is false) to ``REWARDS``, logs the per-step means and gives the ICM its
    own batch of the same transitions (observations, next observations, actions, mask).
    """

    def __call__(  # noqa: D102
        self,
        *,
        rl_module: Any,
        batch: dict[str, Any],
        episodes: list[Any],
        explore: bool | None = None,
        shared_data: dict | None = None,
        metrics: Any = None,
        **kwargs: Any,
    ) -> Any:
        for policy_id in list(batch):
            icm_id = curiosity_module_id(policy_id)
            if icm_id not in rl_module or is_curiosity_module_id(policy_id):
                continue
            icm = rl_module[icm_id].unwrapped()
            policy_batch = batch[policy_id]
            rewards = policy_batch[Columns.REWARDS]
            mask = policy_batch.get(Columns.LOSS_MASK)
            if mask is None:
                mask = torch.ones_like(rewards, dtype=torch.bool)
            raw = icm.intrinsic_rewards(policy_batch)
            icm.update_reward_stats(raw[mask])
            bonus = (icm.model_config["weight"] * raw / icm.reward_scale()).to(rewards.dtype)
            bonus = torch.where(mask, bonus, torch.zeros_like(bonus))
            if metrics is not None and bool(mask.any()):
                figures = {
                    "intrinsic_reward": raw[mask].mean().item(),
                    "intrinsic_reward_weighted": bonus[mask].mean().item(),
                    "extrinsic_reward": rewards[mask].float().mean().item(),
                }
                metrics.log_dict(figures, key=icm_id, window=1)
            policy_batch[Columns.REWARDS] = rewards + bonus
            batch[icm_id] = {
                Columns.OBS: policy_batch[Columns.OBS],
                Columns.NEXT_OBS: policy_batch[Columns.NEXT_OBS],
                Columns.ACTIONS: policy_batch[Columns.ACTIONS],
                Columns.LOSS_MASK: mask,
            }
        return batch


class CuriosityLearnerMixin:
    """Adds the ICM's connector pieces and optimizer to a torch learner class.

    Put it before the learner class (``class L(CuriosityLearnerMixin, PPOTorchLearner)``);
    the learner's loss for the policies is unchanged, the ICM modules' loss is their
    ``compute_self_supervised_loss`` (RLlib's ``Learner.compute_losses`` routes it).
    """

    def build(self) -> None:  # noqa: D102
        super().build()
        connector = self._learner_connector
        if connector is None or not self.config.add_default_connectors_to_learner_pipeline:
            return
        connector.insert_after(
            AddObservationsFromEpisodesToBatch, AddNextObservationsFromEpisodesToTrainBatch()
        )
        connector.insert_after(NumpyToTensor, CuriosityRewardConnector())

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        """The ICM's own Adam at its ``lr``; the algorithm's optimizers for the policies."""
        module = self.module[module_id].unwrapped()
        if not isinstance(module, CuriosityModule):
            super().configure_optimizers_for_module(module_id=module_id, config=config)
            return
        params = self.get_parameters(self.module[module_id])
        self.register_optimizer(
            module_id=module_id,
            optimizer=torch.optim.Adam(params),
            params=params,
            lr_or_lr_schedule=float(module.model_config["lr"]),
        )


class CuriosityPPOLearner(CuriosityLearnerMixin, DataParallelPPOLearner):
    """RLlib's PPO learner with an ICM (``ppo``)."""


class CuriosityValueNormPPOLearner(CuriosityLearnerMixin, ValueNormPPOLearner):
    """MAPPO/IPPO's value-normalizing PPO learner with an ICM (``mappo``, ``ippo``)."""


CURIOUS_LEARNERS: dict[type, type] = {
    PPOTorchLearner: CuriosityPPOLearner,
    DataParallelPPOLearner: CuriosityPPOLearner,
    ValueNormPPOLearner: CuriosityValueNormPPOLearner,
}


class CuriosityMetricsCallback(RLlibCallback):
    """Puts the ICMs' per-step reward figures in ``result["curiosity"]`` (mean over ICMs)."""

    def on_train_result(self, *, algorithm: Any, result: dict, **kwargs: Any) -> None:  # noqa: D102
        result[RESULT_KEY] = curiosity_figures(result.get("learners") or {})


def curiosity_figures(learners: dict[str, Any]) -> dict[str, float]:
    """Mean over ICM modules of each figure in :data:`METRICS` (NaN where none logged)."""
    figures = {}
    for name in METRICS:
        values = [
            float(stats[name])
            for module_id, stats in learners.items()
            if is_curiosity_module_id(module_id) and isinstance(stats, dict) and name in stats
        ]
        figures[name] = float(np.mean(values)) if values else float("nan")
    return figures


# --------------------------------------------------------------------------- the hook


def with_curiosity(
    config: AlgorithmConfig, experiment: ExperimentConfig, env_cls: type
) -> AlgorithmConfig:
    """Add an ICM per policy module and the curious learner (``experiment.curiosity`` set).

    Applied after the algorithm has configured itself: the config's env, policy mapping,
    module spec and learner class are the algorithm's own.
    """
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    spec = experiment.curiosity
    env = config.env(dict(config.env_config))
    mapping = config.policy_mapping_fn
    spaces = {}
    for agent in env.possible_agents:
        spaces.setdefault(mapping(agent, None), (agent, env.observation_spaces[agent]))
    policy_spec = config._rl_module_spec  # the algorithm's own (None: its default)
    specs = {}
    for policy_id in module_ids(experiment, env_cls):
        agent, obs_space = spaces[policy_id]
        # Spaces given explicitly: a local env runner (num_env_runners: 0) would otherwise
        # hand the policies of a MultiRLModuleSpec the env's Dict of all agents' spaces.
        specs[policy_id] = dataclasses.replace(
            policy_spec or RLModuleSpec(),
            observation_space=obs_space,
            action_space=env.action_spaces[agent],
        )
        specs[curiosity_module_id(policy_id)] = RLModuleSpec(
            module_class=CuriosityModule,
            observation_space=obs_space,
            action_space=env.action_spaces[agent],
            learner_only=True,
            model_config={
                **spec.model_dump(mode="json"),
                "obs_key": "obs" if isinstance(obs_space, gym.spaces.Dict) else None,
                "policy_module": policy_id,
            },
        )
    learner = config.learner_class
    if learner not in CURIOUS_LEARNERS:
        raise ValueError(f"curiosity does not know the learner class {learner.__name__}")
    return config.rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs=specs)).learners(
        learner_class=CURIOUS_LEARNERS[learner]
    )


class CuriosityFeature(registry.Feature):
    """``curiosity:``: an ICM per policy module, the curious learner, the ICM figures."""

    def validate(self, experiment: ExperimentConfig, env_cls: type) -> None:  # noqa: D102
        if experiment.curiosity is not None:
            check(experiment, env_cls)

    def callbacks(self, experiment: ExperimentConfig) -> list[type]:  # noqa: D102
        return [] if experiment.curiosity is None else [CuriosityMetricsCallback]

    def configure(  # noqa: D102
        self, config: AlgorithmConfig, experiment: ExperimentConfig, env_cls: type
    ) -> AlgorithmConfig:
        if experiment.curiosity is None:
            return config
        return with_curiosity(config, experiment, env_cls)


FEATURE = CuriosityFeature()
