"""MAPPO's and IPPO's actor-critic module and learner: critics on the global state (or not).

``mappo``: each agent's actor reads its own observation and its critic the env's global
state; ``ippo``: critics on the local observation. A ``TorchRLModule`` with the
``ValueFunctionAPI`` and a ``PPOTorchLearner`` adding value normalization and a
vectorized GAE; PPO's sampling and loss are RLlib's own. The algorithms themselves:
:mod:`rl_platform.algorithms.mappo_algorithm`. The MAPPO paper's details adopted here
and what is not done: docs/algorithms.md, "MAPPO and IPPO".
"""

from __future__ import annotations

import contextlib
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchCategorical,
    TorchDiagGaussian,
)
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, ValueFunctionAPI
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.annotations import override
from ray.rllib.utils.torch_utils import FLOAT_MIN

from rl_platform.algorithms.advantages import replace_gae
from rl_platform.algorithms.data_parallel import DataParallelLearnerMixin, all_reduce_sum
from rl_platform.algorithms.tanh_normal import tanh_normal_for


class ValueNorm(nn.Module):
    """Running, debiased mean and variance of value targets (MAPPO's ``valuenorm.py``).

    Kept as buffers, so the statistics are part of the module's state and checkpoint.
    """

    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5, min_var=1e-2):
        super().__init__()
        self.beta = beta
        self.epsilon = epsilon
        self.min_var = min_var
        # Buffers -> in state_dict -> in RLModule.get_state() -> checkpointed.
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("running_mean_sq", torch.zeros(()))
        self.register_buffer("debiasing_term", torch.zeros(()))

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Debiased running mean and variance (variance floored at ``min_var``)."""
        d = self.debiasing_term.clamp(min=self.epsilon)
        mean = self.running_mean / d
        mean_sq = self.running_mean_sq / d
        var = (mean_sq - mean**2).clamp(min=self.min_var)
        return mean, var

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch of value targets into the running statistics.

        With data-parallel learners the batch is every learner's shard together (each
        learner calls this once per minibatch), so all learners keep equal statistics.
        """
        x = x.detach().float().reshape(-1)
        count = torch.tensor(float(x.numel()), device=x.device)
        sums = all_reduce_sum(torch.stack([x.sum(), (x**2).sum(), count]))
        if sums[2] == 0:
            return
        w = self.beta
        self.running_mean.mul_(w).add_(sums[0] / sums[2] * (1.0 - w))
        self.running_mean_sq.mul_(w).add_(sums[1] / sums[2] * (1.0 - w))
        self.debiasing_term.mul_(w).add_(1.0 - w)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw scale -> normalized scale."""
        mean, var = self.mean_var()
        return (x - mean) / torch.sqrt(var)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized scale -> raw scale."""
        mean, var = self.mean_var()
        return x * torch.sqrt(var) + mean


class SigmoidTanh(nn.Module):
    """tanh computed as ``2 * sigmoid(2x) - 1`` (equal within 2e-7).

    The CPU build of torch used here evaluates ``torch.tanh`` about 10x slower than
    ``torch.sigmoid`` (0.7 ms against 0.07 ms on a 5120 x 64 batch, one thread): with
    two tanh layers that was half the batched sampler's forward pass. No parameters, so
    checkpoints and exports are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if torch.is_grad_enabled():
            return 2.0 * torch.sigmoid(2.0 * x) - 1.0
        # No autograd to feed: one new tensor instead of four (the sampler's hot path).
        return torch.mul(x, 2.0).sigmoid_().mul_(2.0).sub_(1.0)


def _mlp(in_dim, hiddens, act_name, ortho, layernorm_input):
    act_cls = {"tanh": SigmoidTanh, "relu": nn.ReLU}[act_name]
    gain = nn.init.calculate_gain(act_name)
    layers: list[nn.Module] = []
    if layernorm_input:
        layers.append(nn.LayerNorm(in_dim))
    d = in_dim
    for h in hiddens:
        lin = nn.Linear(d, h)
        if ortho:
            nn.init.orthogonal_(lin.weight, gain=gain)
            nn.init.zeros_(lin.bias)
        layers += [lin, act_cls()]
        d = h
    return nn.Sequential(*layers), d


def _head(in_dim, out_dim, ortho, gain):
    lin = nn.Linear(in_dim, out_dim)
    if ortho:
        nn.init.orthogonal_(lin.weight, gain=gain)
        nn.init.zeros_(lin.bias)
    return lin


def _flat_dim(space: gym.spaces.Box) -> int:
    return int(np.prod(space.shape))


class ActorCriticModule(TorchRLModule, ValueFunctionAPI, InferenceOnlyAPI):
    """Actor on ``obs["obs"]``, critic on ``obs[critic_obs_key]`` ("state": MAPPO, "obs": IPPO).

    model_config: ``actor_hiddens``, ``critic_hiddens``, ``activation`` (tanh or relu),
    ``use_orthogonal_init``, ``input_layernorm``, ``free_log_std``, ``log_std_init``,
    ``bounded_mean``, ``action_distribution`` ("gaussian" or "tanh_normal"),
    ``use_value_norm``, ``value_norm_beta``, ``actor_obs_key``, ``critic_obs_key``.
    Env runners build it inference-only: the critic and its statistics stay on learners.
    An ``obs["action_mask"]`` (0/1 per action) masks the logits in every forward pass.
    """

    @override(RLModule)
    def setup(self):  # noqa: D102
        cfg = self.model_config or {}
        self._actor_key = cfg.get("actor_obs_key", "obs")
        self._critic_key = cfg.get("critic_obs_key", "state")
        act = cfg.get("activation", "tanh")
        ortho = cfg.get("use_orthogonal_init", True)
        ln = cfg.get("input_layernorm", False)
        self._use_value_norm = cfg.get("use_value_norm", True)

        if not isinstance(self.observation_space, gym.spaces.Dict):
            raise ValueError(f"expected a Dict observation space, got {self.observation_space}")
        actor_space = self.observation_space[self._actor_key]
        critic_space = self.observation_space[self._critic_key]
        self._actor_obs_shape = actor_space.shape
        self._critic_obs_shape = critic_space.shape

        # --- actor ---
        self.actor_body, d = _mlp(
            _flat_dim(actor_space), cfg.get("actor_hiddens", [64, 64]), act, ortho, ln
        )
        if isinstance(self.action_space, gym.spaces.Discrete):
            self._is_box = False
            self.pi_head = _head(d, int(self.action_space.n), ortho, 0.01)
        elif isinstance(self.action_space, gym.spaces.Box):
            self._is_box = True
            a_dim = _flat_dim(self.action_space)
            low = torch.as_tensor(self.action_space.low, dtype=torch.float32).reshape(-1)
            high = torch.as_tensor(self.action_space.high, dtype=torch.float32).reshape(-1)
            self._bounded = bool(cfg.get("bounded_mean", True)) and bool(
                torch.isfinite(low).all() and torch.isfinite(high).all()
            )
            # mean = center + half_width * tanh(x); buffers so they follow the device
            self.register_buffer("_center", (low + high) / 2, persistent=False)
            self.register_buffer("_half_width", (high - low) / 2, persistent=False)
            self._free_log_std = cfg.get("free_log_std", True)
            self._tanh_normal = cfg.get("action_distribution", "gaussian") == "tanh_normal"
            if self._tanh_normal:
                self._bounded = False  # the distribution squashes its samples
                self._dist_cls = tanh_normal_for(self.action_space)
            if self._free_log_std:
                self.pi_head = _head(d, a_dim, ortho, 0.01)
                self.log_std = nn.Parameter(
                    torch.full((a_dim,), float(cfg.get("log_std_init", 0.0)))
                )
            else:
                self.pi_head = _head(d, 2 * a_dim, ortho, 0.01)
        else:
            raise ValueError(f"unsupported action space {self.action_space}")

        # --- critic (+ value norm); not built for inference-only (EnvRunner) copies.
        # (TorchRLModule.__init__ would also delete them via
        # get_non_inference_attributes(); skipping here just saves the work.)
        if not self.inference_only:
            self.critic_body, d = _mlp(
                _flat_dim(critic_space),
                cfg.get("critic_hiddens", [64, 64]),
                act,
                ortho,
                ln,
            )
            self.vf_head = _head(d, 1, ortho, 1.0)
            if self._use_value_norm:
                self.value_norm = ValueNorm(beta=cfg.get("value_norm_beta", 0.99999))
        # Toggled by the learner (see `normalized_values()`).
        self._return_normalized_values = False

    # ---------------- action distribution classes ----------------
    # TorchRLModule's defaults would also pick Categorical/DiagGaussian from the
    # action space (or the catalog's choice if a catalog got built); being
    # explicit makes this independent of whether PPO's default PPOCatalog could
    # be constructed for a Dict obs space.
    @override(TorchRLModule)
    def get_inference_action_dist_cls(self):  # noqa: D102
        if not self._is_box:
            return TorchCategorical
        return self._dist_cls if self._tanh_normal else TorchDiagGaussian

    @override(TorchRLModule)
    def get_exploration_action_dist_cls(self):  # noqa: D102
        return self.get_inference_action_dist_cls()

    @override(TorchRLModule)
    def get_train_action_dist_cls(self):  # noqa: D102
        return self.get_inference_action_dist_cls()

    # ---------------- actor ----------------
    def _actor_input(self, batch) -> torch.Tensor:
        obs = batch[Columns.OBS]
        x = obs[self._actor_key] if isinstance(obs, dict) else obs
        lead = x.shape[: x.dim() - len(self._actor_obs_shape)]
        return x.reshape(*lead, -1).float()

    def _pi(self, batch) -> dict[str, Any]:
        h = self.actor_body(self._actor_input(batch))
        out = self.pi_head(h)
        obs = batch[Columns.OBS]
        if not self._is_box and isinstance(obs, dict) and "action_mask" in obs:
            # Masked actions get RLlib's FLOAT_MIN logit: never sampled, never the argmax.
            out = out.masked_fill(obs["action_mask"] == 0, FLOAT_MIN)
        if self._is_box:
            out = self._box_inputs(out)
        return {Columns.ACTION_DIST_INPUTS: out}

    def _box_inputs(self, out: torch.Tensor) -> torch.Tensor:
        """The policy head's output as the Box distribution's inputs (a bounded mean squashed)."""
        mean, log_std = (
            (out, self.log_std.expand_as(out)) if self._free_log_std else out.chunk(2, -1)
        )
        if self._bounded:
            mean = self._center + self._half_width * torch.tanh(mean)
        return torch.cat([mean, log_std], dim=-1)

    @override(RLModule)
    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:  # noqa: D102
        return self._pi(batch)

    @override(TorchRLModule)
    def _forward_inference(self, batch, **kwargs):  # noqa: D102
        with torch.no_grad():
            return self._pi(batch)

    @override(TorchRLModule)
    def _forward_exploration(self, batch, **kwargs):  # noqa: D102
        with torch.no_grad():
            return self._pi(batch)

    @override(RLModule)
    def _forward_train(self, batch, **kwargs):  # noqa: D102
        # No Columns.EMBEDDINGS: the critic does not share the actor trunk, so
        # PPO calls compute_values(batch, embeddings=None).
        return self._pi(batch)

    # ---------------- critic ----------------
    def _critic_input(self, batch) -> torch.Tensor:
        obs = batch[Columns.OBS]
        x = obs[self._critic_key] if isinstance(obs, dict) else obs
        lead = x.shape[: x.dim() - len(self._critic_obs_shape)]
        return x.reshape(*lead, -1).float()

    def compute_normalized_values(self, batch) -> torch.Tensor:
        """Raw critic output (normalized space if value-norm is on)."""
        return self.vf_head(self.critic_body(self._critic_input(batch))).squeeze(-1)

    @override(ValueFunctionAPI)
    def compute_values(self, batch: dict[str, Any], embeddings: Any | None = None) -> torch.Tensor:
        """Values on the raw return scale (what GAE needs); normalized inside the learner."""
        v = self.compute_normalized_values(batch)
        if self._use_value_norm and not self._return_normalized_values:
            # GAE (GeneralAdvantageEstimation connector) needs raw-scale values.
            v = self.value_norm.denormalize(v)
        return v

    @contextlib.contextmanager
    def normalized_values(self):
        """Inside this context, `compute_values` returns normalized predictions."""
        prev = self._return_normalized_values
        self._return_normalized_values = True
        try:
            yield
        finally:
            self._return_normalized_values = prev

    # ---------------- InferenceOnlyAPI ----------------
    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:  # noqa: D102
        return ["critic_body", "vf_head", "value_norm"]


class DataParallelPPOLearner(DataParallelLearnerMixin, PPOTorchLearner):
    """RLlib's PPO learner, able to run as 2+ data-parallel learners (``ppo``)."""


class ValueNormPPOLearner(DataParallelLearnerMixin, PPOTorchLearner):
    """PPO learner + MAPPO value normalization (also as 2+ data-parallel learners).

    Hook: `compute_loss_for_module` only (called once per minibatch from
    `TorchLearner._update` -> `Learner.compute_losses`). Per minibatch (as in
    the MAPPO reference code, `cal_value_loss`): update the running stats from
    the valid (LOSS_MASK) value targets, then run PPO's unchanged loss with
      * VALUE_TARGETS replaced by normalized targets (shallow batch copy), and
      * module.compute_values() returning normalized predictions.
    => vf_loss = (v_norm_pred - normalize(target))^2, everything else untouched.
    Its GAE is :class:`~rl_platform.algorithms.advantages.EpisodeGAE` (the same targets,
    vectorized; advantages standardized unless ``learner_config_dict`` says
    ``standardize_advantages: False``).
    """

    @override(PPOTorchLearner)
    def build(self) -> None:  # noqa: D102
        super().build()
        options = self.config.learner_config_dict or {}
        replace_gae(self, standardize=options.get("standardize_advantages", True))

    @override(PPOTorchLearner)
    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):  # noqa: D102
        module = self.module[module_id].unwrapped()
        if not (
            config.use_critic
            and getattr(module, "_use_value_norm", False)
            and hasattr(module, "value_norm")
        ):
            return super().compute_loss_for_module(
                module_id=module_id, config=config, batch=batch, fwd_out=fwd_out
            )

        targets = batch[Postprocessing.VALUE_TARGETS]
        if Columns.LOSS_MASK in batch:
            # Exclude the artificial bootstrap timestep added by
            # AddOneTsToEpisodesAndTruncate (its "target" is meaningless).
            module.value_norm.update(targets[batch[Columns.LOSS_MASK]])
        else:
            module.value_norm.update(targets)

        norm_batch = dict(batch)  # shallow copy; do not mutate the learner's batch
        norm_batch[Postprocessing.VALUE_TARGETS] = module.value_norm.normalize(targets).detach()
        with module.normalized_values():
            return super().compute_loss_for_module(
                module_id=module_id, config=config, batch=norm_batch, fwd_out=fwd_out
            )
