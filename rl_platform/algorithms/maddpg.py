"""MADDPG: deterministic decentralized actors, centralized critics over all agents' actions.

Lowe et al. 2017, "Multi-Agent Actor-Critic for Mixed Cooperative-Competitive
Environments" (NeurIPS), algorithm 1, on RLlib 2.60's new API stack:

* each agent's actor ``mu_i(o_i)`` reads only its local observation (decentralized
  execution). Box actions are ``tanh``-squashed into the box and explored with Gaussian
  noise on the env runners; Discrete actions are logits, trained through the
  Gumbel-softmax relaxation (straight-through one-hot by default) and explored by
  sampling it (section 4.2 / appendix of the paper);
* each agent's critic ``Q_i(s, a_1..a_N)`` reads the global state and every agent's
  action, trained on the agent's own reward (so mixed cooperative-competitive tasks
  work) with the target ``y = r_i + gamma Q'_i(s', mu'_1(o'_1)..mu'_N(o'_N))``. With a
  shared policy there is one actor and one critic, which gets the agent's one-hot index;
* the actor gradient is ``grad mu_i Q_i(s, a_1..mu_i(o_i)..a_N)``: the agent's own action
  from its current actor, the others' from the replay (eq. 6), plus the reference code's
  small penalty on the actor's pre-activations;
* target actors and critics follow with Polyak averaging after every gradient step;
* joint transitions are replayed uniformly from
  :class:`~rl_platform.algorithms.replay.JointReplayBuffer` (shared with QMIX).

RLlib pieces: :class:`MADDPGActorModule` (a ``TorchRLModule`` with ``TargetNetworkAPI``,
inference-only on env runners, whose ``forward_inference`` returns the deterministic
action as ``ACTION_DIST_INPUTS`` so the platform's greedy evaluation uses it as is);
:class:`MADDPGCriticModule`, a learner-only module holding the critic(s) and their
targets; :class:`MADDPGLearner`, one joint loss over all modules in ``compute_losses``
(critic parameters are frozen while the actors' loss passes through them, so the summed
backward pass gives each network only its own gradient); :class:`MultiAgentDDPG`, an
``Algorithm`` whose ``training_step`` samples, stores, replays and syncs weights.

Not implemented: policy ensembles (section 4.3) and inferring other agents' policies
(section 4.2, the critic is given the true actions), Ornstein-Uhlenbeck noise (Gaussian
only: OU needs per-agent noise state that RLlib's batched forward passes do not keep),
recurrent actors, prioritized replay, more than one learner, action spaces other than
1-d Box and Discrete, and agents with differing spaces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.rl_module import RLModule, RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from ray.rllib.utils.schedules.scheduler import Scheduler

from rl_platform import registry
from rl_platform.algorithms.mixers import masked_mean, soft_update, td_targets
from rl_platform.algorithms.replay import JointReplayAlgorithm, JointReplayConfig
from rl_platform.config import ConfigError
from rl_platform.config.algorithms import MADDPGParams

if TYPE_CHECKING:
    from rl_platform.algorithms.common import BuildContext

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


def joint_actions_with_own(replayed: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """Each agent's critic input: replayed actions with its own slot replaced.

    replayed, own: (B, N, A) -> (B, N, N * A) whose row ``i`` holds agent ``i``'s action
    from ``own`` and every other agent's from ``replayed`` (the paper's eq. 6).
    """
    n = replayed.shape[1]
    eye = torch.eye(n, device=replayed.device, dtype=replayed.dtype)[None, :, :, None]
    joint = eye * own[:, None, :, :] + (1.0 - eye) * replayed[:, None, :, :]  # (B, N, N, A)
    return joint.flatten(start_dim=2)


def shared_joint_actions(actions: torch.Tensor) -> torch.Tensor:
    """The same joint action for every agent's critic: (B, N, A) -> (B, N, N * A)."""
    b, n = actions.shape[:2]
    return actions.reshape(b, 1, -1).expand(b, n, -1)


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

    def preactivations(self, obs: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Logits (Discrete) or pre-tanh outputs (Box), (..., action_dim)."""
        return (self._target_policy_net if target else self.policy_net)(obs)

    def deterministic_action(self, pre: torch.Tensor) -> torch.Tensor:
        """The greedy action of preactivations: in the box, or one-hot of the argmax."""
        if self.discrete:
            return F.one_hot(pre.argmax(-1), self.action_dim).to(pre.dtype)
        return squash_to_box(pre, self._low, self._high)

    def training_action(self, pre: torch.Tensor) -> torch.Tensor:
        """The differentiable action the critic sees: squashed, or a Gumbel-softmax sample."""
        if self.discrete:
            return gumbel_softmax_action(pre, self.gumbel_temperature, self.gumbel_hard)
        return squash_to_box(pre, self._low, self._high)

    @override(TorchRLModule)
    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        with torch.no_grad():
            pre = self.preactivations(self.local_obs(batch))
        if self.discrete:
            return {Columns.ACTION_DIST_INPUTS: pre, Columns.ACTIONS: pre.argmax(-1)}
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
                return {Columns.ACTIONS: torch.distributions.Categorical(logits=pre).sample()}
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
        return {Columns.ACTION_DIST_INPUTS: self.preactivations(self.local_obs(batch), True)}

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


# --------------------------------------------------------------------------- learner


def maddpg_losses(
    actors: list[tuple[MADDPGActorModule, list[int]]],
    critic: MADDPGCriticModule,
    data: dict[str, torch.Tensor],
    gamma: float,
    actor_reg: float,
) -> tuple[list[torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
    """MADDPG's losses on a batch of joint transitions (see :class:`JointReplayBuffer`).

    Args:
        actors: each actor module with the indices of the agents it acts for.
        critic: the critics' module.
        data: ``obs``, ``next_obs`` (B, N, obs_dim); ``actions`` (B, N) indices or
            (B, N, A) Box actions; ``rewards``, ``mask``, ``agent_terminated`` (B, N);
            ``state``, ``next_state`` (B, S); ``terminated`` (B,).
        gamma: discount.
        actor_reg: weight of the penalty on the actors' squared preactivations.

    Returns:
        One actor loss per entry of ``actors``, the critic loss, and diagnostics.
    """
    obs, next_obs = data["obs"], data["next_obs"]
    b, n = obs.shape[:2]
    mask = data["mask"]
    next_mask = mask * (1.0 - data["agent_terminated"])

    def per_agent(fn: Any) -> torch.Tensor:
        columns: list[torch.Tensor | None] = [None] * n
        for module, indices in actors:
            out = fn(module, indices)
            for j, index in enumerate(indices):
                columns[index] = out[:, j]
        return torch.stack(columns, dim=1)

    first = actors[0][0]
    if first.discrete:
        replayed = F.one_hot(data["actions"].long(), first.action_dim).float()
    else:
        replayed = data["actions"].float()
    replayed = replayed * mask[..., None]

    with torch.no_grad():
        next_actions = per_agent(
            lambda m, idx: m.training_action(m.preactivations(next_obs[:, idx], target=True))
        )
        next_q = critic.q_values(
            data["next_state"], shared_joint_actions(next_actions * next_mask[..., None]), True
        )
        terminated = torch.maximum(data["agent_terminated"], data["terminated"][:, None])
        targets = td_targets(data["rewards"], terminated, next_q, gamma)
    q = critic.q_values(data["state"], shared_joint_actions(replayed))
    td_error = q - targets
    critic_loss = masked_mean(td_error.pow(2), mask)

    pre = per_agent(lambda m, idx: m.preactivations(obs[:, idx]))
    own = per_agent(lambda m, idx: m.training_action(pre[:, idx]))
    # The actors' loss passes through the critic without training it.
    critic_params = list(critic.critics.parameters())
    for p in critic_params:
        p.requires_grad_(False)
    try:
        q_policy = critic.q_values(data["state"], joint_actions_with_own(replayed, own))
    finally:
        for p in critic_params:
            p.requires_grad_(True)
    actor_losses = []
    for _, indices in actors:
        loss = -masked_mean(q_policy[:, indices], mask[:, indices])
        actor_losses.append(loss + actor_reg * pre[:, indices].pow(2).mean())
    stats = {
        "q_mean": q.mean().detach(),
        "target_mean": targets.mean(),
        "td_error_abs_mean": td_error.abs().mean().detach(),
        "q_policy_mean": q_policy.mean().detach(),
    }
    return actor_losses, critic_loss, stats


class MADDPGLearner(TorchLearner):
    """MADDPG's joint update: every critic and actor from one batch of joint transitions.

    The batch arrives under :data:`CRITIC_ID`; ``compute_losses`` returns each actor
    module's loss and the critics' loss (see :func:`maddpg_losses`). Target networks
    follow by Polyak averaging after every gradient step (``apply_gradients``).
    """

    @override(TorchLearner)
    def build(self) -> None:  # noqa: D102
        super().build()
        self.module.foreach_module(
            lambda mid, module: (
                module.make_target_networks() if isinstance(module, TargetNetworkAPI) else None
            )
        )
        mapping = self.config.policy_mapping_fn
        self._agent_modules: dict[str, list[int]] = {}
        for index, agent in enumerate(self.config.joint_agents):
            self._agent_modules.setdefault(mapping(agent, None), []).append(index)

    @override(TorchLearner)
    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        """Adam with the critic's or the actor's learning rate."""
        module = self._module[module_id]
        params = self.get_parameters(module)
        lr = self.config.critic_lr if module_id == CRITIC_ID else self.config.lr
        self.register_optimizer(
            module_id=module_id,
            optimizer=torch.optim.Adam(params),
            params=params,
            lr_or_lr_schedule=lr,
        )

    @override(TorchLearner)
    def compute_losses(self, *, fwd_out: dict[str, Any], batch: dict[str, Any]) -> dict:  # noqa: D102
        actors = [
            (self.module[mid].unwrapped(), indices) for mid, indices in self._agent_modules.items()
        ]
        actor_losses, critic_loss, stats = maddpg_losses(
            actors,
            self.module[CRITIC_ID].unwrapped(),
            batch[CRITIC_ID],
            gamma=self.config.gamma,
            actor_reg=self.config.actor_reg,
        )
        for name, value in stats.items():
            self.metrics.log_value((CRITIC_ID, name), value.item())
        losses = {CRITIC_ID: critic_loss}
        for mid, loss in zip(self._agent_modules, actor_losses, strict=True):
            self.metrics.log_value((mid, "actor_loss"), loss.item())
            losses[mid] = loss
        return losses

    @override(TorchLearner)
    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: Any, fwd_out: Any):
        """Unused: the loss is joint over modules (see :meth:`compute_losses`)."""
        raise NotImplementedError("MADDPG computes one joint loss")

    @override(TorchLearner)
    def apply_gradients(self, gradients_dict: dict[Any, Any]) -> None:
        """Step the optimizers, then move every target network ``tau`` toward its net."""
        super().apply_gradients(gradients_dict)
        for module in self.module.values():
            module = module.unwrapped()
            if isinstance(module, TargetNetworkAPI):
                for main, target in module.get_target_network_pairs():
                    soft_update(main, target, self.config.tau)


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
        """Refuse action spaces MADDPG cannot act in (see :func:`action_dim_of`)."""
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
        shared = context.experiment.algorithm.shared_policy
        critic = config.critic_spec(shared, list(network.hidden_sizes), network.activation)
        return config.rl_module(
            rl_module_spec=MultiRLModuleSpec(rl_module_specs={CRITIC_ID: critic})
        )
