"""The math of value-based cooperative MARL, as small torch functions (no Ray).

:func:`vdn_mix` (VDN's sum), :class:`QMixer` (QMIX's monotonic mixing network),
:func:`double_q_next_values` and :func:`td_targets` (double-DQN targets),
:func:`soft_update` (hard or Polyak target updates) and :func:`sequence_td_loss` (the TD
loss on replayed sequences for recurrent agents); :func:`allowed` and :func:`mask_values`
apply action masks (masked actions are never taken, nor valued in a target's max). The
RLlib modules and learner in
:mod:`rl_platform.algorithms.qmix` call these; the unit tests call them directly. The
maths and papers: docs/algorithms.md, "IQL, VDN and QMIX".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from ray.rllib.utils.torch_utils import FLOAT_MIN


def vdn_mix(agent_qs: torch.Tensor) -> torch.Tensor:
    """VDN: ``Q_tot = sum_a Q_a``. agent_qs: (batch, n_agents) -> (batch,)."""
    return agent_qs.sum(dim=-1)


def _hypernet(in_dim: int, out_dim: int, hidden: int, layers: int) -> nn.Module:
    if layers == 1:
        return nn.Linear(in_dim, out_dim)
    if layers == 2:
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
    raise ValueError(f"hypernet_layers must be 1 or 2, got {layers}")


class QMixer(nn.Module):
    """QMIX's mixing network: ``Q_tot = w2 . elu(W1 q + b1) + V(s)``, W1, w2 >= 0.

    Args:
        n_agents: agents mixed (the length of ``agent_qs``' last axis).
        state_dim: size of the flat global state the hypernetworks read.
        mixing_embed_dim: width of the mixing network's hidden layer.
        hypernet_embed_dim: hidden width of 2-layer weight hypernetworks.
        hypernet_layers: 1 (the paper: linear hypernetworks for W1, w2) or 2 (pymarl's
            later default: one ReLU hidden layer).

    The state goes through a LayerNorm before the hypernetworks: our envs' states are
    not scaled to [-1, 1] (SMAC's are), and on unscaled states (supply chain inventories
    up to 50) the hypernetworks' weights, hence Q_tot, blew up and QMIX learned nothing.
    """

    def __init__(
        self,
        n_agents: int,
        state_dim: int,
        mixing_embed_dim: int = 32,
        hypernet_embed_dim: int = 64,
        hypernet_layers: int = 1,
    ) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.embed_dim = mixing_embed_dim
        self.state_norm = nn.LayerNorm(state_dim)
        self.hyper_w1 = _hypernet(
            state_dim, mixing_embed_dim * n_agents, hypernet_embed_dim, hypernet_layers
        )
        self.hyper_w_final = _hypernet(
            state_dim, mixing_embed_dim, hypernet_embed_dim, hypernet_layers
        )
        self.hyper_b1 = nn.Linear(state_dim, mixing_embed_dim)
        # The final bias V(s): always a 2-layer hypernetwork (the paper).
        self.hyper_v = nn.Sequential(
            nn.Linear(state_dim, mixing_embed_dim), nn.ReLU(), nn.Linear(mixing_embed_dim, 1)
        )

    def forward(self, agent_qs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """Mix agent_qs (batch, n_agents) given states (batch, state_dim) -> (batch,)."""
        b = agent_qs.shape[0]
        states = self.state_norm(states)
        w1 = torch.abs(self.hyper_w1(states)).view(b, self.n_agents, self.embed_dim)
        b1 = self.hyper_b1(states).view(b, 1, self.embed_dim)
        hidden = F.elu(torch.bmm(agent_qs.view(b, 1, self.n_agents), w1) + b1)
        w_final = torch.abs(self.hyper_w_final(states)).view(b, self.embed_dim, 1)
        v = self.hyper_v(states).view(b, 1, 1)
        return (torch.bmm(hidden, w_final) + v).view(b)


def allowed(mask: torch.Tensor) -> torch.Tensor:
    """The allowed actions (..., n_actions) bool of a 0/1 action mask.

    A row with no allowed action (padding, an agent's terminal observation) allows every
    action, so a max or a draw over it stays finite and defined.
    """
    ok = mask > 0
    return ok | ~ok.any(dim=-1, keepdim=True)


def mask_values(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Q values or logits (..., n_actions) with masked actions at ``FLOAT_MIN`` (RLlib's).

    ``mask`` (..., n_actions) is 0/1 (see :func:`allowed`); None leaves ``values`` as is.
    """
    if mask is None:
        return values
    return values.masked_fill(~allowed(mask), FLOAT_MIN)


def random_allowed(like: torch.Tensor, n: int, mask: torch.Tensor | None) -> torch.Tensor:
    """Uniform random actions shaped like `like` (int64) among `mask`'s allowed ones.

    ``mask`` (*like.shape, n) 0/1, or None: any of the ``n`` actions.
    """
    if mask is None:
        return torch.randint_like(like, n)
    # The argmax of i.i.d. uniforms over the allowed set is uniform over it.
    noise = torch.rand(mask.shape, device=mask.device)
    return noise.masked_fill(~allowed(mask), -1.0).argmax(dim=-1).to(like.dtype)


def double_q_next_values(
    next_q_online: torch.Tensor,
    next_q_target: torch.Tensor,
    double_q: bool = True,
    next_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Value of the next state's greedy action: (..., n_actions) -> (...).

    With ``double_q`` the online network picks the action and the target network values
    it (double DQN); otherwise the target network's own max. ``next_mask`` (the next
    observation's action mask, 0/1, (..., n_actions)) restricts both to allowed actions.
    """
    if not double_q:
        return mask_values(next_q_target, next_mask).max(dim=-1).values
    best = mask_values(next_q_online, next_mask).argmax(dim=-1, keepdim=True)
    return next_q_target.gather(-1, best).squeeze(-1)


def td_targets(
    rewards: torch.Tensor, terminated: torch.Tensor, next_values: torch.Tensor, gamma: float
) -> torch.Tensor:
    """One-step TD targets ``r + gamma (1 - terminated) V(s')``, without gradient.

    A truncated (time-limit) step still bootstraps: only ``terminated`` cuts it.
    """
    return (rewards + gamma * (1.0 - terminated.float()) * next_values).detach()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is true (0 when nothing is)."""
    mask = mask.float()
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


@torch.no_grad()
def soft_update(main: nn.Module, target: nn.Module, tau: float) -> None:
    """``target <- tau * main + (1 - tau) * target`` (``tau = 1``: a hard copy)."""
    for p_main, p_target in zip(main.parameters(), target.parameters(), strict=True):
        p_target.mul_(1.0 - tau).add_(p_main, alpha=tau)
    for b_main, b_target in zip(main.buffers(), target.buffers(), strict=True):
        b_target.copy_(b_main)


# mix(agent_qs (M, N), states (M, state_dim), target) -> Q_tot (M,); None: no mixer (IQL).
Mix = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]


def sequence_td_loss(
    q_seq: torch.Tensor,
    target_q_seq: torch.Tensor,
    data: dict[str, torch.Tensor],
    mix: Mix | None,
    gamma: float,
    double_q: bool = True,
    team_reduce: str = "mean",
) -> dict[str, torch.Tensor]:
    """The double-Q TD loss of a batch of sequences of joint transitions.

    Args:
        q_seq: (B, T + 1, N, A) online Q values of the agents unrolled over each
            sequence's T + 1 observations (step t's next observation is step t + 1's).
        target_q_seq: (B, T + 1, N, A) the target networks' Q values, unrolled the same way.
        data: ``actions``, ``rewards``, ``mask``, ``agent_terminated`` (B, T, N);
            ``terminated``, ``valid`` (B, T: the step exists, 0 on padding);
            ``state`` (B, T + 1, state_dim) (step t's next state is ``state[:, t + 1]``);
            optionally ``action_mask`` (B, T + 1, N, A), aligned with the observations:
            the targets' max is over the next step's allowed actions.
        mix: the mixer (VDN, QMIX) or None for independent learners (IQL).
        gamma: the discount.
        double_q: the online network picks the next action, the target values it.
        team_reduce: the team reward is the agents' "mean" or "sum" (mixers only).

    Returns:
        ``loss`` (scalar, mean over valid steps, or valid agent-steps for IQL),
        ``td_error``, ``targets`` and ``q_taken`` ((B, T) or (B, T, N); zero on padding
        for ``td_error``), ``weight`` (the mask they are averaged with).
    """
    mask = data["mask"] * data["valid"][..., None]
    valid = data["valid"]
    actions = data["actions"].long()
    chosen = q_seq[:, :-1].gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # (B, T, N)
    action_mask = data.get("action_mask")
    with torch.no_grad():
        next_values = double_q_next_values(
            q_seq[:, 1:].detach(),
            target_q_seq[:, 1:],
            double_q=double_q,
            next_mask=None if action_mask is None else action_mask[:, 1:],
        )  # (B, T, N)
    if mix is None:
        terminated = torch.maximum(data["agent_terminated"], data["terminated"][..., None])
        targets = td_targets(data["rewards"], terminated, next_values, gamma)
        td_error = (chosen - targets) * mask
        return {
            "loss": masked_mean(td_error.pow(2), mask),
            "td_error": td_error,
            "targets": targets,
            "q_taken": chosen,
            "weight": mask,
        }
    b, t, n = chosen.shape
    rewards = (data["rewards"] * mask).sum(-1)
    if team_reduce == "mean":
        rewards = rewards / mask.sum(-1).clamp(min=1.0)
    next_mask = mask * (1.0 - data["agent_terminated"])
    states = data["state"].reshape(b, t + 1, -1)
    with torch.no_grad():
        next_total = mix(
            (next_values * next_mask).reshape(b * t, n), states[:, 1:].reshape(b * t, -1), True
        ).view(b, t)
    targets = td_targets(rewards, data["terminated"], next_total, gamma)
    q_total = mix((chosen * mask).reshape(b * t, n), states[:, :-1].reshape(b * t, -1), False)
    td_error = (q_total.view(b, t) - targets) * valid
    return {
        "loss": masked_mean(td_error.pow(2), valid),
        "td_error": td_error,
        "targets": targets,
        "q_taken": q_total.view(b, t),
        "weight": valid,
    }
