"""MADDPG's RLModules: the agents' deterministic actors and the centralized critics.

See :mod:`rl_platform.algorithms.maddpg` for the algorithm as a whole.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from ray.rllib.utils.schedules.scheduler import Scheduler

from rl_platform.algorithms.mixers import mask_values

CRITIC_ID = "__critic__"


# --------------------------------------------------------------------------- math


def mlp(in_dim: int, hiddens: list[int], activation: str, out_dim: int) -> nn.Sequential:
    """A feedforward network ``in_dim -> hiddens -> out_dim`` (linear output)."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}[activation]
    layers: list[nn.Module] = []
    for width in hiddens:
        layers += [nn.Linear(in_dim, width), act()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def squash_to_box(pre: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``low + (tanh(pre) + 1) / 2 * (high - low)``: any real vector into the box."""
    return low + (torch.tanh(pre) + 1.0) * 0.5 * (high - low)


def gumbel_softmax_action(
    logits: torch.Tensor, temperature: float = 1.0, hard: bool = True
) -> torch.Tensor:
    """A differentiable sample (..., n) of the categorical of `logits` (Jang et al. 2017).

    ``hard``: a one-hot vector in the forward pass whose gradient is the soft sample's
    (straight-through), so the critic sees actions like the replayed one-hot ones.
    """
    return F.gumbel_softmax(logits, tau=temperature, hard=hard, dim=-1)


class CentralCritics(nn.Module):
    """``Q_i(s, a_1..a_N)`` for every agent ``i``: one network per agent, or one shared.

    Args:
        n_agents: N.
        state_dim: size of the flat global state.
        joint_action_dim: N times an agent's encoded action size (one-hot or Box dim).
        hiddens, activation: the hidden layers.
        shared: one network for all agents, with the agent's one-hot index as input.
    """

    def __init__(
        self,
        n_agents: int,
        state_dim: int,
        joint_action_dim: int,
        hiddens: list[int],
        activation: str,
        shared: bool,
    ) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.shared = shared
        in_dim = state_dim + joint_action_dim + (n_agents if shared else 0)
        self.nets = nn.ModuleList(
            mlp(in_dim, hiddens, activation, 1) for _ in range(1 if shared else n_agents)
        )

    def forward(self, state: torch.Tensor, joint_actions: torch.Tensor) -> torch.Tensor:
        """Q values (B, N) of states (B, state_dim) and joint actions (B, N, N * A)."""
        b, n = joint_actions.shape[:2]
        states = state[:, None, :].expand(b, n, -1)
        if self.shared:
            ids = torch.eye(n, device=state.device, dtype=state.dtype).expand(b, n, n)
            return self.nets[0](torch.cat([states, joint_actions, ids], dim=-1)).squeeze(-1)
        x = torch.cat([states, joint_actions], dim=-1)
        return torch.stack([net(x[:, i]).squeeze(-1) for i, net in enumerate(self.nets)], 1)


# --------------------------------------------------------------------------- modules


class MADDPGActorModule(TorchRLModule, InferenceOnlyAPI, TargetNetworkAPI):
    """An agent's deterministic actor on its local observation (``obs["obs"]``).

    model_config: ``fcnet_hiddens``, ``fcnet_activation``; ``exploration_noise`` (Box: the
    Gaussian noise's std as a fraction of the box's half-width; a constant or an RLlib
    schedule over env steps), ``gumbel_temperature`` and ``gumbel_hard`` (Discrete).
    With Discrete actions and an ``"action_mask"`` (0/1) in the Dict obs, masked actions'
    logits are ``FLOAT_MIN``: zero probability when sampling, never the argmax.
    Env runners build it inference-only (no target network).
    """

    @override(RLModule)
    def setup(self) -> None:  # noqa: D102
        cfg = self.model_config or {}
        space = self.observation_space
        local = space["obs"] if isinstance(space, gym.spaces.Dict) else space
        self._obs_shape = local.shape
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        if self.discrete:
            self.action_dim = int(self.action_space.n)
        elif isinstance(self.action_space, gym.spaces.Box) and len(self.action_space.shape) == 1:
            self.action_dim = int(self.action_space.shape[0])
            if not (
                np.isfinite(self.action_space.low).all()
                and np.isfinite(self.action_space.high).all()
            ):
                raise ValueError(
                    f"MADDPG needs a bounded Box action space, got {self.action_space}"
                )
            self.register_buffer(
                "_low",
                torch.as_tensor(self.action_space.low, dtype=torch.float32),
                persistent=False,
            )
            self.register_buffer(
                "_high",
                torch.as_tensor(self.action_space.high, dtype=torch.float32),
                persistent=False,
            )
        else:
            raise ValueError(
                f"MADDPG needs a Discrete or 1-d Box action space, got {self.action_space}"
            )
        self.policy_net = mlp(
            int(np.prod(local.shape)),
            list(cfg.get("fcnet_hiddens", [64, 64])),
            cfg.get("fcnet_activation", "relu"),
            self.action_dim,
        )
        # Small last layer (DDPG): actions start near the box's centre, tanh unsaturated.
        last = self.policy_net[-1]
        nn.init.uniform_(last.weight, -3e-3, 3e-3)
        nn.init.zeros_(last.bias)
        if not self.inference_only:
            self._target_policy_net = make_target_network(self.policy_net)
        self.noise_schedule = Scheduler(
            fixed_value_or_schedule=cfg.get("exploration_noise", 0.1), framework="torch"
        )
        self.gumbel_temperature = float(cfg.get("gumbel_temperature", 1.0))
        self.gumbel_hard = bool(cfg.get("gumbel_hard", True))

    def local_obs(self, batch: dict[str, Any]) -> torch.Tensor:
        """The flat local observation of a batch (Dict or plain obs)."""
        obs = batch[Columns.OBS]
        x = obs["obs"] if isinstance(obs, dict) else obs
        lead = x.shape[: x.dim() - len(self._obs_shape)]
        return x.reshape(*lead, -1).float()

    def action_mask(self, batch: dict[str, Any]) -> torch.Tensor | None:
        """The batch's action mask (..., n) for Discrete actions, or None when it has none."""
        obs = batch[Columns.OBS]
        if self.discrete and isinstance(obs, dict) and "action_mask" in obs:
            return torch.as_tensor(obs["action_mask"])
        return None

    def preactivations(self, obs: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Logits (Discrete) or pre-tanh outputs (Box), (..., action_dim)."""
        return (self._target_policy_net if target else self.policy_net)(obs)

    def deterministic_action(
        self, pre: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The greedy action of preactivations: in the box, or one-hot of the (allowed) argmax."""
        if self.discrete:
            return F.one_hot(mask_values(pre, mask).argmax(-1), self.action_dim).to(pre.dtype)
        return squash_to_box(pre, self._low, self._high)

    def training_action(self, pre: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The differentiable action the critic sees: squashed, or a Gumbel-softmax sample.

        ``mask`` (Discrete, 0/1, like ``pre``): masked actions get zero probability.
        """
        if self.discrete:
            logits = mask_values(pre, mask)
            return gumbel_softmax_action(logits, self.gumbel_temperature, self.gumbel_hard)
        return squash_to_box(pre, self._low, self._high)

    @override(TorchRLModule)
    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        with torch.no_grad():
            pre = self.preactivations(self.local_obs(batch))
        if self.discrete:
            logits = mask_values(pre, self.action_mask(batch))
            return {Columns.ACTION_DIST_INPUTS: logits, Columns.ACTIONS: logits.argmax(-1)}
        action = squash_to_box(pre, self._low, self._high)
        return {Columns.ACTION_DIST_INPUTS: action, Columns.ACTIONS: action}

    @override(TorchRLModule)
    def _forward_exploration(
        self, batch: dict[str, Any], t: int | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        with torch.no_grad():
            pre = self.preactivations(self.local_obs(batch))
            if self.discrete:
                # A sample of the Gumbel-softmax's categorical: what the critic is trained on.
                logits = mask_values(pre, self.action_mask(batch))
                return {Columns.ACTIONS: torch.distributions.Categorical(logits=logits).sample()}
            if t is not None:
                self.noise_schedule.update(t)
            scale = float(self.noise_schedule.get_current_value())
            action = squash_to_box(pre, self._low, self._high)
            half = (self._high - self._low) * 0.5
            noisy = action + scale * half * torch.randn_like(action)
            return {Columns.ACTIONS: torch.clamp(noisy, self._low, self._high)}

    @override(RLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # The joint loss calls preactivations() itself (see MADDPGLearner).
        return {Columns.ACTION_DIST_INPUTS: self.preactivations(self.local_obs(batch))}

    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:  # noqa: D102
        self._target_policy_net = make_target_network(self.policy_net)

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:  # noqa: D102
        return [(self.policy_net, self._target_policy_net)]

    @override(TargetNetworkAPI)
    def forward_target(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:  # noqa: D102
        pre = self.preactivations(self.local_obs(batch), True)
        return {Columns.ACTION_DIST_INPUTS: mask_values(pre, self.action_mask(batch))}

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:  # noqa: D102
        return ["_target_policy_net"]


class MADDPGCriticModule(TorchRLModule, TargetNetworkAPI):
    """The learner-only centralized critics :class:`CentralCritics` and their targets.

    model_config: ``n_agents``, ``state_dim``, ``joint_action_dim``, ``shared``,
    ``critic_hiddens``, ``fcnet_activation``. It computes nothing in RLlib's forward
    passes; the learner calls :meth:`q_values`.
    """

    @override(RLModule)
    def setup(self) -> None:  # noqa: D102
        cfg = self.model_config or {}
        self.critics = CentralCritics(
            n_agents=int(cfg["n_agents"]),
            state_dim=int(cfg["state_dim"]),
            joint_action_dim=int(cfg["joint_action_dim"]),
            hiddens=list(cfg.get("critic_hiddens", [64, 64])),
            activation=cfg.get("fcnet_activation", "relu"),
            shared=bool(cfg.get("shared", True)),
        )
        self._target_critics = make_target_network(self.critics)

    def q_values(
        self, state: torch.Tensor, joint_actions: torch.Tensor, target: bool = False
    ) -> torch.Tensor:
        """Q values (B, N) of states (B, state_dim) and joint actions (B, N, N * A)."""
        return (self._target_critics if target else self.critics)(state, joint_actions)

    @override(RLModule)
    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {}

    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:  # noqa: D102
        self._target_critics = make_target_network(self.critics)

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:  # noqa: D102
        return [(self.critics, self._target_critics)]

    @override(TargetNetworkAPI)
    def forward_target(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:  # noqa: D102
        return {}
