"""Recurrent MAPPO/IPPO: GRU actor and GRU critic (``algorithm.hyperparams.recurrent``).

The MAPPO paper's recurrent policy: ``obs -> MLP -> GRU -> head`` for the actor and the
critic (the critic on the global state for MAPPO, the local observation for IPPO),
trained on chunks of ``chunk_length`` steps (RLlib's ``max_seq_len``) with each chunk's
hidden states from sampling. RLlib's default connectors add the time axis, cut episodes
into zero-padded chunks and feed ``STATE_IN``; PPO's loss and the value-normalizing
learner of :mod:`rl_platform.algorithms.mappo` are unchanged. docs/algorithms.md,
"Recurrent MAPPO/IPPO".
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.utils.annotations import override
from ray.rllib.utils.torch_utils import FLOAT_MIN

from rl_platform.algorithms.mappo import ActorCriticModule, _flat_dim, _head, _mlp

ACTOR_H = "actor_h"
CRITIC_H = "critic_h"
MASK_KEY = "action_mask"


def _gru(in_dim: int, hidden: int, ortho: bool) -> nn.GRU:
    gru = nn.GRU(in_dim, hidden, batch_first=True)
    if ortho:  # as the MAPPO paper's RNNLayer
        for name, param in gru.named_parameters():
            if "bias" in name:
                nn.init.zeros_(param)
            else:
                nn.init.orthogonal_(param)
    return gru


class RecurrentActorCriticModule(ActorCriticModule):
    """:class:`ActorCriticModule` with a GRU after each MLP body (stateful).

    Extra model_config: ``rnn_hidden_dim`` (None: the last hidden layer's width) and
    ``max_seq_len`` (RLlib's chunk length). State: ``{"actor_h": (H,), "critic_h": (H,)}``.
    Forward passes take observations (B, T, ...) or one step (B, ...), read ``STATE_IN``
    (zeros when absent) and return ``STATE_OUT``. The critic and its GRU are kept on
    inference-only (EnvRunner) copies, so sampled chunks carry the critic's state too;
    the critic state passes through unchanged when the batch has no critic input (a
    MAPPO policy acting on local observations only). An ``"action_mask"`` in the
    observation masks the logits.
    """

    @override(RLModule)
    def setup(self):  # noqa: D102
        super().setup()
        cfg = self.model_config or {}
        ortho = cfg.get("use_orthogonal_init", True)
        act = cfg.get("activation", "tanh")
        ln = cfg.get("input_layernorm", False)
        actor_d = self.pi_head.in_features
        self.rnn_hidden_dim = int(cfg.get("rnn_hidden_dim") or actor_d)
        h = self.rnn_hidden_dim
        self.actor_rnn = _gru(actor_d, h, ortho)
        self.actor_rnn_norm = nn.LayerNorm(h)
        self.pi_head = _head(h, self.pi_head.out_features, ortho, 0.01)
        if self.inference_only:  # the parent skipped the critic: the runners need its state
            self.critic_body, critic_d = _mlp(
                _flat_dim(self.observation_space[self._critic_key]),
                cfg.get("critic_hiddens", [64, 64]),
                act,
                ortho,
                ln,
            )
        else:
            critic_d = self.vf_head.in_features
        self.critic_rnn = _gru(critic_d, h, ortho)
        self.critic_rnn_norm = nn.LayerNorm(h)
        self.vf_head = _head(h, 1, ortho, 1.0)
        self._has_mask = isinstance(self.observation_space, gym.spaces.Dict) and (
            MASK_KEY in self.observation_space.spaces
        )

    @override(RLModule)
    def get_initial_state(self) -> dict[str, np.ndarray]:
        """Zero hidden states of the actor's and the critic's GRU."""
        zeros = np.zeros(self.rnn_hidden_dim, np.float32)
        return {ACTOR_H: zeros, CRITIC_H: zeros.copy()}

    # ---------------- recurrence ----------------
    def _state(self, batch, key: str, b: int, device) -> torch.Tensor:
        state = batch.get(Columns.STATE_IN)
        if state is None or key not in state:
            return torch.zeros(b, self.rnn_hidden_dim, device=device)
        return torch.as_tensor(state[key], dtype=torch.float32, device=device)

    @staticmethod
    def _unroll(body, rnn, norm, x: torch.Tensor, h0: torch.Tensor):
        """Features (B, T, H) and the last state (B, H) of x (B, T, D) from h0 (B, H)."""
        out, h = rnn(body(x), h0.unsqueeze(0).contiguous())
        return norm(out), h.squeeze(0)

    @staticmethod
    def _timed(x: torch.Tensor, n_feature_dims: int) -> tuple[torch.Tensor, bool]:
        """Add a time axis (T = 1) to one step (B, ...); sequences (B, T, ...) pass."""
        single = x.dim() == n_feature_dims + 1
        return (x.unsqueeze(1) if single else x), single

    def _critic_features(self, batch) -> tuple[torch.Tensor, torch.Tensor, bool]:
        x, single = self._timed(self._critic_input(batch), 1)
        h0 = self._state(batch, CRITIC_H, x.shape[0], x.device)
        feats, h = self._unroll(self.critic_body, self.critic_rnn, self.critic_rnn_norm, x, h0)
        return feats, h, single

    def _mask(self, batch) -> torch.Tensor | None:
        obs = batch[Columns.OBS]
        if isinstance(obs, dict) and MASK_KEY in obs:
            return torch.as_tensor(obs[MASK_KEY])
        return None

    def _pi(self, batch) -> dict[str, Any]:
        x, single = self._timed(self._actor_input(batch), 1)
        h0 = self._state(batch, ACTOR_H, x.shape[0], x.device)
        feats, h_actor = self._unroll(self.actor_body, self.actor_rnn, self.actor_rnn_norm, x, h0)
        out = self.pi_head(feats)
        if single:
            out = out[:, 0]
        if self._is_box:
            out = self._box_inputs(out)
        else:
            mask = self._mask(batch)
            if mask is not None:
                out = out.masked_fill(mask.reshape(out.shape) == 0, FLOAT_MIN)
        obs = batch[Columns.OBS]
        if hasattr(self, "critic_body") and isinstance(obs, dict) and self._critic_key in obs:
            with torch.no_grad():
                _, h_critic, _ = self._critic_features(batch)
        else:
            h_critic = self._state(batch, CRITIC_H, x.shape[0], x.device)
        return {
            Columns.ACTION_DIST_INPUTS: out,
            Columns.STATE_OUT: {ACTOR_H: h_actor, CRITIC_H: h_critic},
        }

    # ---------------- critic ----------------
    def compute_normalized_values(self, batch) -> torch.Tensor:
        """Critic output (B, T) or (B,) from ``STATE_IN["critic_h"]`` (normalized space)."""
        feats, _, single = self._critic_features(batch)
        v = self.vf_head(feats).squeeze(-1)
        return v[:, 0] if single else v

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:  # noqa: D102
        return ["value_norm"]
