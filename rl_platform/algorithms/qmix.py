"""QMIX and VDN (and the machinery IQL shares): value-based cooperative MARL on RLlib.

Each agent has a Q network on its own observation (decentralized execution); during
training the agents' chosen-action Q values are combined into a joint value ``Q_tot``
trained on the team reward with one-step double-DQN targets:

* ``vdn``: ``Q_tot = sum_a Q_a`` (Sunehag et al. 2018, "Value-Decomposition Networks For
  Cooperative Multi-Agent Learning");
* ``qmix``: ``Q_tot = mixer(Q_1..Q_N; s)``, monotonic in every ``Q_a``, its weights made
  from the global state ``s`` by hypernetworks (Rashid et al. 2018, "QMIX: Monotonic
  Value Function Factorisation for Deep Multi-Agent Reinforcement Learning");
* ``iql`` (:mod:`rl_platform.algorithms.iql`): no mixer, each agent's own reward
  (independent DQN learners; Tan 1993, Tampuu et al. 2017).

RLlib 2.60 ships none of these, so they are built on its extension points:

* :class:`AgentQModule`, a ``TorchRLModule``: epsilon-greedy in ``_forward_exploration``
  and greedy in ``_forward_inference`` (which also returns the Q values as
  ``ACTION_DIST_INPUTS`` so the platform's greedy evaluation is an argmax), a target
  network (``TargetNetworkAPI``) kept off the env runners (``InferenceOnlyAPI``);
* :class:`MixerModule`, a learner-only ``TorchRLModule`` holding the mixer and its target
  (parameterless for VDN and IQL); it is part of the MultiRLModule, so RLlib checkpoints
  it and gives it an optimizer;
* :class:`~rl_platform.algorithms.replay.JointReplayBuffer` (shared with MADDPG): joint
  transitions (every agent's observation, action, reward, next observation; global state
  and next state; termination) rebuilt from the per-agent data of RLlib's
  ``MultiAgentEpisode`` chunks, with a mask for agents that have left;
* :class:`ValueDecompositionLearner`, a ``TorchLearner`` whose ``compute_losses`` runs
  every agent's Q network, the mixer and the double-Q target on one joint batch, and
  whose ``after_gradient_based_update`` updates target networks (hard or Polyak);
* :class:`ValueDecomposition`, an ``Algorithm`` whose ``training_step`` samples from the
  env runners, stores, samples the replay, updates the learner and syncs weights.

Envs are wrapped in :class:`~rl_platform.sampling.GlobalStateEnv`: an agent's
observation is ``{"obs": local, "state": global}``; the Q network reads only ``obs``, the
replay takes ``state`` for the mixer. With a shared policy the agent's one-hot index is
appended to ``obs`` (the paper's parameter sharing with agent ids).

With ``recurrent: true`` each agent's network is the paper's (and pymarl's) GRU agent,
``obs -> fc -> ReLU -> GRUCell -> fc -> Q``: a stateful RLModule whose hidden state the env
runners carry across an episode's steps (``STATE_IN`` / ``STATE_OUT``), trained from a
:class:`~rl_platform.algorithms.replay.SequenceReplayBuffer` of fixed-length, padded
sequences; the learner unrolls online and target networks over each sequence from the
stored hidden state (zeros at an episode's start) and applies the mixer per time step
(:func:`~rl_platform.algorithms.mixers.sequence_td_loss`).

Not done: action masks, prioritized replay, burn-in, more than one learner (the joint
loss reads several modules at once, which a per-module DDP split does not cover).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.rl_module import RLModule, RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
)
from ray.rllib.utils.schedules.scheduler import Scheduler

from rl_platform import registry
from rl_platform.algorithms.mixers import (
    QMixer,
    double_q_next_values,
    masked_mean,
    sequence_td_loss,
    soft_update,
    td_targets,
    vdn_mix,
)
from rl_platform.algorithms.replay import (
    HIDDEN,
    JointReplayAlgorithm,
    JointReplayBuffer,
    JointReplayConfig,
    SequenceReplayBuffer,
)
from rl_platform.config import ConfigError
from rl_platform.config.algorithms import QMIXParams, ValueDecompositionParams, VDNParams

if TYPE_CHECKING:
    from rl_platform.algorithms.common import BuildContext

MIXER_ID = "__mixer__"
MIXERS = ("none", "vdn", "qmix")
QF_PREDS = "qf_preds"


# --------------------------------------------------------------------------- modules


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
        return {Columns.ACTION_DIST_INPUTS: q, Columns.ACTIONS: q.argmax(dim=-1), **extra}

    @override(TorchRLModule)
    def _forward_exploration(
        self, batch: dict[str, Any], t: int | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        with torch.no_grad():
            q, extra = self._q(batch)
        if t is not None:
            self.epsilon_schedule.update(t)
        epsilon = float(self.epsilon_schedule.get_current_value())
        greedy = q.argmax(dim=-1)
        random = torch.randint_like(greedy, int(self.action_space.n))
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


# --------------------------------------------------------------------------- learner


class ValueDecompositionLearner(TorchLearner):
    """The joint TD loss of IQL, VDN and QMIX over one batch of joint transitions.

    The batch arrives under :data:`MIXER_ID` (the buffer's arrays, see
    :class:`JointReplayBuffer`); ``compute_losses`` runs each agent's module on its
    agents' columns, so gradients reach agent networks and the mixer from one loss.
    """

    @override(TorchLearner)
    def build(self) -> None:  # noqa: D102
        super().build()
        self.module.foreach_module(
            lambda mid, module: (
                module.make_target_networks() if isinstance(module, TargetNetworkAPI) else None
            )
        )
        self._last_target_update = 0
        agents = list(self.config.joint_agents)
        mapping = self.config.policy_mapping_fn
        self._agent_modules: dict[str, list[int]] = {}
        for index, agent in enumerate(agents):
            self._agent_modules.setdefault(mapping(agent, None), []).append(index)
        self._n_agents = len(agents)

    @override(TorchLearner)
    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        """Like RLlib's, but a parameterless module (the VDN/IQL mixer) gets no optimizer."""
        if not list(self.module[module_id].parameters()):
            return
        super().configure_optimizers_for_module(module_id, config)

    def _agent_q(self, obs: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Q values (B, N, A) of every agent's observations (B, N, obs_dim)."""
        columns: list[torch.Tensor | None] = [None] * self._n_agents
        for module_id, indices in self._agent_modules.items():
            module = self.module[module_id].unwrapped()
            q = module.q_values(obs[:, indices], target=target)  # (B, k, A)
            for j, index in enumerate(indices):
                columns[index] = q[:, j]
        return torch.stack(columns, dim=1)

    def _agent_q_sequence(
        self, obs: torch.Tensor, hidden0: torch.Tensor, target: bool = False
    ) -> torch.Tensor:
        """Recurrent Q values (B, T, N, A) of obs (B, T, N, obs_dim) from hidden0 (B, N, H)."""
        b, t = obs.shape[:2]
        columns: list[torch.Tensor | None] = [None] * self._n_agents
        for module_id, indices in self._agent_modules.items():
            module = self.module[module_id].unwrapped()
            k = len(indices)
            x = obs[:, :, indices].transpose(1, 2).reshape(b * k, t, -1)
            h = hidden0[:, indices].reshape(b * k, -1)
            q = module.q_sequence(x, h, target=target).reshape(b, k, t, -1)
            for j, index in enumerate(indices):
                columns[index] = q[:, j]
        return torch.stack(columns, dim=2)

    def _sequence_losses(self, data: dict[str, Any], mixer: MixerModule) -> dict:
        """The recurrent loss: unroll over replayed sequences, TD errors per time step."""
        config = self.config
        q_seq = self._agent_q_sequence(data["obs"], data["hidden0"])
        with torch.no_grad():
            target_q_seq = self._agent_q_sequence(data["obs"], data["hidden0"], target=True)
        out = sequence_td_loss(
            q_seq,
            target_q_seq,
            data,
            None if mixer.mixer_type == "none" else mixer.mix,
            config.gamma,
            double_q=config.double_q,
            team_reduce=config.team_reduce,
        )
        weight = out["weight"]
        logged = {
            "td_error_abs_mean": out["td_error"].abs(),
            "q_taken_mean": out["q_taken"],
            "target_mean": out["targets"],
        }
        for name, value in logged.items():
            self.metrics.log_value((MIXER_ID, name), masked_mean(value, weight).item())
        return {MIXER_ID: out["loss"]}

    @override(TorchLearner)
    def compute_losses(self, *, fwd_out: dict[str, Any], batch: dict[str, Any]) -> dict:  # noqa: D102
        config = self.config
        data = batch[MIXER_ID]
        mixer = self.module[MIXER_ID].unwrapped()
        if config.recurrent:
            return self._sequence_losses(data, mixer)
        mask = data["mask"]
        actions = data["actions"].long()
        q = self._agent_q(data["obs"])
        chosen = q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # (B, N)
        with torch.no_grad():
            next_values = double_q_next_values(
                self._agent_q(data["next_obs"]),
                self._agent_q(data["next_obs"], target=True),
                double_q=config.double_q,
            )  # (B, N)
        if mixer.mixer_type == "none":
            terminated = torch.maximum(data["agent_terminated"], data["terminated"][:, None])
            targets = td_targets(data["rewards"], terminated, next_values, config.gamma)
            td_error = chosen - targets
            loss = masked_mean(td_error.pow(2), mask)
            q_taken = masked_mean(chosen, mask)
        else:
            rewards = (data["rewards"] * mask).sum(-1)
            if config.team_reduce == "mean":
                rewards = rewards / mask.sum(-1).clamp(min=1.0)
            next_mask = mask * (1.0 - data["agent_terminated"])
            with torch.no_grad():
                next_total = mixer.mix(next_values * next_mask, data["next_state"], target=True)
            targets = td_targets(rewards, data["terminated"], next_total, config.gamma)
            q_total = mixer.mix(chosen * mask, data["state"])
            td_error = q_total - targets
            loss = td_error.pow(2).mean()
            q_taken = q_total.mean()
        self.metrics.log_value((MIXER_ID, "td_error_abs_mean"), td_error.abs().mean().item())
        self.metrics.log_value((MIXER_ID, "q_taken_mean"), q_taken.item())
        self.metrics.log_value((MIXER_ID, "target_mean"), targets.mean().item())
        return {MIXER_ID: loss}

    @override(TorchLearner)
    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: Any, fwd_out: Any):
        """Unused: the loss is joint over modules (see :meth:`compute_losses`)."""
        raise NotImplementedError("value decomposition computes one joint loss")

    @override(TorchLearner)
    def after_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        """Update every target network each ``target_network_update_freq`` env steps."""
        super().after_gradient_based_update(timesteps=timesteps)
        now = timesteps.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0)
        if now - self._last_target_update < self.config.target_network_update_freq:
            return
        for module in self.module.values():
            module = module.unwrapped()
            if isinstance(module, TargetNetworkAPI):
                for main, target in module.get_target_network_pairs():
                    soft_update(main, target, self.config.tau)
        self._last_target_update = now


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
        """Refuse envs whose actions are not discrete.

        Raises:
            ConfigError: an agent's action space is not ``Discrete``.
        """
        experiment = context.experiment
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
