"""MADDPG's losses (:func:`maddpg_losses`) and the learner that applies them.

See :mod:`rl_platform.algorithms.maddpg` for the algorithm as a whole.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.apis import TargetNetworkAPI
from ray.rllib.utils.annotations import override

from rl_platform.algorithms.maddpg.module import CRITIC_ID, MADDPGActorModule, MADDPGCriticModule
from rl_platform.algorithms.mixers import masked_mean, soft_update, td_targets


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
            ``state``, ``next_state`` (B, S); ``terminated`` (B,); optionally
            ``action_mask``, ``next_action_mask`` (B, N, A) for Discrete actions: the
            actors' (and target actors') Gumbel-softmax samples keep to allowed actions.
        gamma: discount.
        actor_reg: weight of the penalty on the actors' squared preactivations.

    Returns:
        One actor loss per entry of ``actors``, the critic loss, and diagnostics.
    """
    obs, next_obs = data["obs"], data["next_obs"]
    b, n = obs.shape[:2]
    mask = data["mask"]
    next_mask = mask * (1.0 - data["agent_terminated"])
    action_mask, next_action_mask = data.get("action_mask"), data.get("next_action_mask")

    def masks_of(masks: torch.Tensor | None, idx: list[int]) -> torch.Tensor | None:
        return None if masks is None else masks[:, idx]

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
            lambda m, idx: m.training_action(
                m.preactivations(next_obs[:, idx], target=True), masks_of(next_action_mask, idx)
            )
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
    own = per_agent(lambda m, idx: m.training_action(pre[:, idx], masks_of(action_mask, idx)))
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
