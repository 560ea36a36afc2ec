"""A small PettingZoo ParallelEnv with action masks: the fixture for masked training.

Each step every agent is offered a random subset of ``n_actions`` actions (at least one);
taking action ``k`` pays ``values[k]`` (falling with ``k``) when it is offered and
``illegal_reward`` when it is not. The best action (0) is offered only with probability
``p_best``, so a policy that ignores the mask is drawn to it. The mask is in the
observation (PettingZoo's ``{"observation", "action_mask"}``) or, with
``mask_in="info"``, in ``infos[agent]["action_mask"]``. ``infos[agent]["illegal"]``
counts masked actions taken (0 or 1 per step). Short id: ``env.id: masked_choice``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv


class MaskedChoiceEnv(ParallelEnv):
    """See the module docstring."""

    metadata = {"name": "masked_choice_v0", "render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        n_agents: int = 2,
        n_actions: int = 5,
        max_cycles: int = 25,
        p_best: float = 0.2,
        p_offer: float = 0.5,
        illegal_reward: float = -1.0,
        mask_in: str = "obs",
    ) -> None:
        if mask_in not in ("obs", "info"):
            raise ValueError(f"mask_in must be 'obs' or 'info', got {mask_in!r}")
        if n_actions < 2:
            raise ValueError("n_actions must be at least 2")
        self.possible_agents = [f"player_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        self.n_actions = n_actions
        self.max_cycles = max_cycles
        self.p_best = p_best
        self.p_offer = p_offer
        self.illegal_reward = illegal_reward
        self.mask_in = mask_in
        self.values = np.linspace(1.0, 0.2, n_actions).astype(np.float32)
        features = gym.spaces.Box(0.0, 1.0, (n_actions + 1,), np.float32)
        mask = gym.spaces.Box(0, 1, (n_actions,), np.int8)
        self._obs_space = (
            gym.spaces.Dict({"observation": features, "action_mask": mask})
            if mask_in == "obs"
            else features
        )
        self._act_space = gym.spaces.Discrete(n_actions)
        # Option k is worth values[k]: option 0 is the best (and the most often masked).
        self.action_names = tuple(f"option {k} ({v:.2g})" for k, v in enumerate(self.values))
        self._rng = np.random.default_rng()
        self._t = 0
        self._masks: dict[str, np.ndarray] = {}

    def observation_space(self, agent: str) -> gym.Space:  # noqa: D102
        return self._obs_space

    def action_space(self, agent: str) -> gym.Space:  # noqa: D102
        return self._act_space

    def _draw_masks(self) -> None:
        for agent in self.agents:
            mask = (self._rng.random(self.n_actions) < self.p_offer).astype(np.int8)
            mask[0] = self._rng.random() < self.p_best
            if not mask.any():
                mask[1 + self._rng.integers(self.n_actions - 1)] = 1
            self._masks[agent] = mask

    def _observe(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        obs, infos = {}, {}
        for agent in self.agents:
            mask = self._masks[agent]
            features = np.append(mask, self._t / self.max_cycles).astype(np.float32)
            if self.mask_in == "obs":
                obs[agent] = {"observation": features, "action_mask": mask.copy()}
                infos[agent] = {}
            else:
                obs[agent] = features
                infos[agent] = {"action_mask": mask.copy()}
        return obs, infos

    def reset(self, seed: int | None = None, options: dict | None = None):  # noqa: D102
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._t = 0
        self._draw_masks()
        return self._observe()

    def step(self, actions: dict[str, Any]):  # noqa: D102
        rewards, illegal = {}, {}
        for agent in self.agents:
            action = int(actions[agent])
            legal = bool(self._masks[agent][action])
            rewards[agent] = float(self.values[action]) if legal else self.illegal_reward
            illegal[agent] = int(not legal)
        self._t += 1
        done = self._t >= self.max_cycles
        self._draw_masks()
        obs, infos = self._observe()
        for agent in self.agents:
            infos[agent]["illegal"] = illegal[agent]
        terms = {a: False for a in self.agents}
        truncs = {a: done for a in self.agents}
        if done:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def close(self) -> None:  # noqa: D102
        pass


def parallel_env(**kwargs: Any) -> MaskedChoiceEnv:
    """The env (``pettingzoo:`` factory convention)."""
    return MaskedChoiceEnv(**kwargs)
