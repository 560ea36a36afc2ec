"""Env wrappers the algorithms put around any registered env.

:class:`GlobalStateEnv` gives each agent a ``Dict`` observation: ``obs`` (its own
observation) and ``state`` (the env's global state). A centralized critic reads
``state``, the actor only ``obs``, so execution stays decentralized (MAPPO, and the
mixers and critics of later algorithms). With ``agent_id: true`` both parts get the
agent's one-hot index appended, which lets one shared network tell agents apart
(MAPPO paper, section 4: agent-specific global state and agent ids).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv


def _with_one_hot(space: gym.Space, size: int, where: str) -> gym.spaces.Box:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(
            f"{where} must be a flat Box to add a centralized critic, got {space}; "
            "envs with action masks or image observations are not supported yet"
        )
    low = np.concatenate([space.low, np.zeros(size)]).astype(np.float32)
    high = np.concatenate([space.high, np.ones(size)]).astype(np.float32)
    return gym.spaces.Box(low, high, dtype=np.float32)


class GlobalStateEnv(MultiAgentEnv):
    """A registered env whose agents observe ``{"obs": local, "state": global}``.

    Config: ``env_id`` (a registry id), ``env_config`` (its constructor config),
    ``agent_id`` (append one-hot agent indices) and optionally ``rewards`` (the
    experiment's reward section: the env is then built inside a
    :class:`~rl_platform.rewards.RewardEnv`, or, with ``hierarchy``, in a
    :class:`~rl_platform.advanced.hierarchical.HierarchicalEnv`). Task switching and the
    rest of the inner env's API stay reachable through :attr:`inner`, ``set_task`` and
    ``get_task``.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        from rl_platform.rewards import RewardEnv, make_env

        if config.get("hierarchy"):
            from rl_platform.advanced.hierarchical import build_env

            self.inner = build_env(config)
        elif "rewards" in config:
            self.inner = RewardEnv(config)
        else:
            self.inner = make_env(
                config["env_id"], config.get("env_config", {}), config.get("env_class")
            )
        self.possible_agents = list(self.inner.possible_agents)
        self.agents = list(self.possible_agents)
        n = len(self.possible_agents) if config.get("agent_id", False) else 0
        eye = np.eye(len(self.possible_agents), dtype=np.float32)
        self._ids = {a: eye[i][:n] for i, a in enumerate(self.possible_agents)}
        state_space = _with_one_hot(self.inner.state_space, n, "the global state")
        self.observation_spaces = {
            a: gym.spaces.Dict(
                {
                    "obs": _with_one_hot(self.inner.observation_spaces[a], n, f"{a}'s observation"),
                    "state": state_space,
                }
            )
            for a in self.possible_agents
        }
        self.action_spaces = dict(self.inner.action_spaces)
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)

    def _wrap(self, obs: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
        state = np.asarray(self.inner.state(), dtype=np.float32)
        return {
            a: {
                "obs": np.concatenate([o, self._ids[a]]).astype(np.float32, copy=False),
                "state": np.concatenate([state, self._ids[a]]),
            }
            for a, o in obs.items()
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # noqa: D102
        obs, infos = self.inner.reset(seed=seed, options=options)
        self.agents = list(self.inner.agents)
        return self._wrap(obs), infos

    def step(self, action_dict: dict[str, Any]):  # noqa: D102
        obs, rewards, terms, truncs, infos = self.inner.step(action_dict)
        self.agents = list(self.inner.agents)
        return self._wrap(obs), rewards, terms, truncs, infos

    def state(self) -> np.ndarray:
        """The inner env's global state."""
        return self.inner.state()

    def set_task(self, level: str) -> None:
        """Switch the inner env's task level."""
        self.inner.set_task(level)

    def get_task(self) -> str:
        """The inner env's task level."""
        return self.inner.get_task()
