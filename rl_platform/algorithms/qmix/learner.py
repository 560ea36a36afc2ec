"""The joint TD loss of IQL, VDN and QMIX: :class:`ValueDecompositionLearner`.

See :mod:`rl_platform.algorithms.qmix` for the algorithm as a whole; the math (mixer, TD
targets) is in :mod:`rl_platform.algorithms.mixers`.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.apis import TargetNetworkAPI
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

from rl_platform.algorithms.mixers import (
    double_q_next_values,
    masked_mean,
    sequence_td_loss,
    soft_update,
    td_targets,
)
from rl_platform.algorithms.qmix.module import MIXER_ID, MixerModule


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
                next_mask=data.get("next_action_mask"),  # the max over allowed actions
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
