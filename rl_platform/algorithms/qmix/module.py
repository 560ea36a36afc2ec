"""QMIX / VDN / IQL RLModules: each agent's Q network (feedforward or GRU) and the mixer.

See :mod:`rl_platform.algorithms.qmix` for the algorithm as a whole.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from ray.rllib.utils.schedules.scheduler import Scheduler

from rl_platform.algorithms.mixers import QMixer, mask_values, random_allowed, vdn_mix
from rl_platform.algorithms.replay import HIDDEN

MIXER_ID = "__mixer__"
MIXERS = ("none", "vdn", "qmix")
QF_PREDS = "qf_preds"


def _mlp(in_dim: int, hiddens: list[int], activation: str, out_dim: int) -> nn.Sequential:
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}[activation]
    layers: list[nn.Module] = []
    for width in hiddens:
        layers += [nn.Linear(in_dim, width), act()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class GRUQNetwork(nn.Module):
    """The QMIX paper's recurrent agent: ``obs -> fc -> ReLU -> GRUCell -> fc -> Q``."""

    def __init__(self, obs_dim: int, hidden_dim: int, n_actions: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(obs_dim, hidden_dim)
        self.rnn = nn.GRUCell(hidden_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, n_actions)

    def forward(self, obs: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unroll over time: obs (B, T, obs_dim), h (B, hidden) -> Q (B, T, A), h_T."""
        x = torch.relu(self.fc1(obs))
        hiddens = []
        for t in range(x.shape[1]):
            h = self.rnn(x[:, t], h)
            hiddens.append(h)
        return self.fc2(torch.stack(hiddens, dim=1)), h


class AgentQModule(TorchRLModule, InferenceOnlyAPI, TargetNetworkAPI):
    """An agent's Q network on its local observation (``obs["obs"]`` of a Dict obs).

    model_config: ``fcnet_hiddens``, ``fcnet_activation`` (relu, tanh, elu, silu) and
    ``epsilon`` (a constant or RLlib schedule ``[[t, value], ...]`` over env steps).
    With ``recurrent: true`` the network is a :class:`GRUQNetwork` of width
    ``rnn_hidden_dim`` (``fcnet_*`` unused) and the module is stateful: its forward
    passes read ``STATE_IN`` ``{"h": (B, hidden)}`` (zeros when absent) and observations
    (B, T, ...) or (B, ...), and return ``STATE_OUT``.
    When the Dict obs has an ``"action_mask"`` (0/1, (..., n_actions)), masked actions
    are never chosen: greedy actions and the returned Q values (``ACTION_DIST_INPUTS``)
    use Q masked to ``FLOAT_MIN``, epsilon-random actions are drawn among allowed ones.
    Env runners build it inference-only (no target network).
    """

    @override(RLModule)
    def setup(self) -> None:  # noqa: D102
        cfg = self.model_config or {}
        if not isinstance(self.action_space, gym.spaces.Discrete):
            raise ValueError(f"AgentQModule needs a Discrete action space, got {self.action_space}")
        space = self.observation_space
        local = space["obs"] if isinstance(space, gym.spaces.Dict) else space
        self._obs_shape = local.shape
        self.recurrent = bool(cfg.get("recurrent", False))
        self.rnn_hidden_dim = int(cfg.get("rnn_hidden_dim", 64))
        if self.recurrent:
            self.q_net = GRUQNetwork(
                int(np.prod(local.shape)), self.rnn_hidden_dim, int(self.action_space.n)
            )
        else:
            self.q_net = _mlp(
                int(np.prod(local.shape)),
                list(cfg.get("fcnet_hiddens", [64])),
                cfg.get("fcnet_activation", "relu"),
                int(self.action_space.n),
            )
        if not self.inference_only:
            self._target_q_net = make_target_network(self.q_net)
        self.epsilon_schedule = Scheduler(
            fixed_value_or_schedule=cfg.get("epsilon", 0.05), framework="torch"
        )

    def local_obs(self, batch: dict[str, Any]) -> torch.Tensor:
        """The flat local observation of a batch (Dict or plain obs)."""
        obs = batch[Columns.OBS]
        x = obs["obs"] if isinstance(obs, dict) else obs
        lead = x.shape[: x.dim() - len(self._obs_shape)]
        return x.reshape(*lead, -1).float()

    @staticmethod
    def action_mask(batch: dict[str, Any]) -> torch.Tensor | None:
        """The batch's action mask (..., n_actions), or None when its obs carries none."""
        obs = batch[Columns.OBS]
        if isinstance(obs, dict) and "action_mask" in obs:
            return torch.as_tensor(obs["action_mask"])
        return None

    def q_values(self, obs: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Q values (..., n_actions) of flat local observations (..., obs_dim)."""
        return (self._target_q_net if target else self.q_net)(obs)

    def q_sequence(self, obs: torch.Tensor, h0: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Recurrent Q values (B, T, A) unrolled over obs (B, T, obs_dim) from h0 (B, hidden)."""
        return (self._target_q_net if target else self.q_net)(obs, h0)[0]

    @override(RLModule)
    def get_initial_state(self) -> dict[str, torch.Tensor]:
        """``{"h": zeros(rnn_hidden_dim)}`` when recurrent, else ``{}`` (stateless)."""
        return {HIDDEN: torch.zeros(self.rnn_hidden_dim)} if self.recurrent else {}

    def _q(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Q values of a forward pass's batch and the extra outputs (STATE_OUT)."""
        x = self.local_obs(batch)
        if not self.recurrent:
            return self.q_values(x), {}
        # Env runners add a time axis (B, 1, ...) for stateful modules; callers without
        # state (platform evaluation) may pass (B, ...): one step from STATE_IN or zeros.
        single = x.dim() == 2
        if single:
            x = x[:, None]
        state = batch.get(Columns.STATE_IN)
        if state is None:
            h = torch.zeros(x.shape[0], self.rnn_hidden_dim, device=x.device)
        else:
            h = torch.as_tensor(state[HIDDEN], dtype=torch.float32, device=x.device)
        q, h = self.q_net(x, h)
        return (q[:, 0] if single else q), {Columns.STATE_OUT: {HIDDEN: h}}

    @override(TorchRLModule)
    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        with torch.no_grad():
            q, extra = self._q(batch)
            q = mask_values(q, self.action_mask(batch))
        return {Columns.ACTION_DIST_INPUTS: q, Columns.ACTIONS: q.argmax(dim=-1), **extra}

    @override(TorchRLModule)
    def _forward_exploration(
        self, batch: dict[str, Any], t: int | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        mask = self.action_mask(batch)
        with torch.no_grad():
            q, extra = self._q(batch)
        if t is not None:
            self.epsilon_schedule.update(t)
        epsilon = float(self.epsilon_schedule.get_current_value())
        greedy = mask_values(q, mask).argmax(dim=-1)
        random = random_allowed(greedy, int(self.action_space.n), mask)
        explore = torch.rand(greedy.shape, device=q.device) < epsilon
        return {Columns.ACTIONS: torch.where(explore, random, greedy), **extra}

    @override(RLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # The joint loss calls q_values() / q_sequence() itself (ValueDecompositionLearner).
        q, extra = self._q(batch)
        return {QF_PREDS: q, **extra}

    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:  # noqa: D102
        self._target_q_net = make_target_network(self.q_net)

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:  # noqa: D102
        return [(self.q_net, self._target_q_net)]

    @override(TargetNetworkAPI)
    def forward_target(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:  # noqa: D102
        if self.recurrent:
            raise NotImplementedError("recurrent targets are unrolled by q_sequence()")
        return {QF_PREDS: self.q_values(self.local_obs(batch), target=True)}

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:  # noqa: D102
        return ["_target_q_net"]


class MixerModule(TorchRLModule, TargetNetworkAPI):
    """The learner-only mixer: QMIX's :class:`QMixer`, VDN's sum, or none (IQL).

    model_config: ``mixer``, ``n_agents``, ``state_dim``, ``mixing_embed_dim``,
    ``hypernet_embed_dim``, ``hypernet_layers``. Its observation space is the global
    state's. It computes nothing in RLlib's forward passes; the learner calls :meth:`mix`.
    """

    @override(RLModule)
    def setup(self) -> None:  # noqa: D102
        cfg = self.model_config or {}
        self.mixer_type = cfg.get("mixer", "qmix")
        if self.mixer_type not in MIXERS:
            raise ValueError(f"mixer must be one of {MIXERS}, got {self.mixer_type!r}")
        self.mixer: nn.Module | None = None
        if self.mixer_type == "qmix":
            self.mixer = QMixer(
                n_agents=int(cfg["n_agents"]),
                state_dim=int(cfg["state_dim"]),
                mixing_embed_dim=int(cfg.get("mixing_embed_dim", 32)),
                hypernet_embed_dim=int(cfg.get("hypernet_embed_dim", 64)),
                hypernet_layers=int(cfg.get("hypernet_layers", 1)),
            )
            self._target_mixer = make_target_network(self.mixer)

    def mix(self, agent_qs: torch.Tensor, states: torch.Tensor, target: bool = False):
        """Q_tot (batch,) of chosen-action Q values (batch, n_agents)."""
        if self.mixer_type == "vdn":
            return vdn_mix(agent_qs)
        if self.mixer_type == "qmix":
            return (self._target_mixer if target else self.mixer)(agent_qs, states)
        raise ValueError("the 'none' mixer (IQL) has no joint value")

    @override(RLModule)
    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {}

    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:  # noqa: D102
        if self.mixer is not None:
            self._target_mixer = make_target_network(self.mixer)

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:  # noqa: D102
        return [] if self.mixer is None else [(self.mixer, self._target_mixer)]

    @override(TargetNetworkAPI)
    def forward_target(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:  # noqa: D102
        return {}
