"""The PettingZoo view of one copy of a core: a ``ParallelEnv`` over the RLlib view."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

if TYPE_CHECKING:
    from rl_platform.envs.base import CoreMultiAgentEnv


class CoreParallelEnv(ParallelEnv):
    """PettingZoo view of one copy of a :class:`BatchedCore`."""

    metadata: ClassVar[dict[str, Any]] = {"name": "core", "render_modes": []}

    def __init__(self, env: CoreMultiAgentEnv) -> None:
        self._env = env
        self.possible_agents = list(env.possible_agents)
        self.agents: list[str] = []
        self.render_mode = None
        self.metadata = {"name": type(env).__name__, "render_modes": [], "is_parallelizable": True}

    @functools.cache  # noqa: B019 (spaces are fixed per instance)
    def observation_space(self, agent: str) -> gym.Space:
        """Per-agent observation space."""
        return self._env.observation_spaces[agent]

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> gym.Space:
        """Per-agent action space."""
        return self._env.action_spaces[agent]

    @property
    def state_space(self) -> gym.Space:
        """Space of :meth:`state`."""
        return self._env.state_space

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode (PettingZoo semantics)."""
        obs, infos = self._env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        return obs, infos

    def step(self, actions: dict[str, Any]):
        """One simultaneous step; agents leave `agents` when the episode ends."""
        obs, rewards, terms, truncs, infos = self._env.step(actions)
        terms.pop("__all__")
        truncs.pop("__all__")
        if any(terms.values()) or any(truncs.values()):
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def state(self) -> np.ndarray:
        """Global state."""
        return self._env.state()

    def set_task(self, level: str) -> None:
        """Switch difficulty from the next episode on."""
        self._env.set_task(level)

    def get_task(self) -> str:
        """Current difficulty level."""
        return self._env.get_task()

    def close(self) -> None:
        """Nothing to release."""
