"""A memory task: the cue is only in the first observation (recurrent policies' fixture).

At reset each agent draws a cue among ``n_cues`` and sees it (one-hot) in its first
observation only; for the next ``delay`` steps it sees blanks (zeros and the elapsed
time). At the last step an agent earns 1 when its action equals its cue, else 0; every
other step pays 0. A policy without memory cannot do better than chance (1 / n_cues);
one that remembers the cue earns 1. Built-in id: ``memory_cue``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv


class MemoryCueEnv(ParallelEnv):
    """See the module docstring. Observation: ``[cue one-hot, t / delay]``."""

    metadata = {"name": "memory_cue_v0", "render_modes": []}  # noqa: RUF012

    def __init__(self, n_agents: int = 2, n_cues: int = 3, delay: int = 4) -> None:
        if n_cues < 2:
            raise ValueError("n_cues must be at least 2")
        if delay < 1:
            raise ValueError("delay must be at least 1")
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        self.n_cues = n_cues
        self.delay = delay
        self._obs_space = gym.spaces.Box(0.0, 1.0, (n_cues + 1,), np.float32)
        self._act_space = gym.spaces.Discrete(n_cues)
        self.action_names = tuple(f"cue {k}" for k in range(n_cues))  # the action pays on its cue
        self._rng = np.random.default_rng()
        self._t = 0
        self._cues: dict[str, int] = {}

    def observation_space(self, agent: str) -> gym.Space:  # noqa: D102
        return self._obs_space

    def action_space(self, agent: str) -> gym.Space:  # noqa: D102
        return self._act_space

    def _observe(self) -> dict[str, np.ndarray]:
        obs = {}
        for agent in self.agents:
            o = np.zeros(self.n_cues + 1, np.float32)
            if self._t == 0:
                o[self._cues[agent]] = 1.0
            o[-1] = self._t / self.delay
            obs[agent] = o
        return obs

    def reset(self, seed: int | None = None, options: dict | None = None):  # noqa: D102
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._t = 0
        self._cues = {a: int(self._rng.integers(self.n_cues)) for a in self.agents}
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]):  # noqa: D102
        last = self._t >= self.delay
        rewards = {a: float(last and int(actions[a]) == self._cues[a]) for a in self.agents}
        self._t += 1
        obs = self._observe()
        infos: dict[str, dict] = {a: {} for a in self.agents}
        terms = {a: last for a in self.agents}
        truncs = {a: False for a in self.agents}
        if last:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def close(self) -> None:  # noqa: D102
        pass


def parallel_env(**kwargs: Any) -> MemoryCueEnv:
    """The env (``pettingzoo:`` factory convention)."""
    return MemoryCueEnv(**kwargs)
